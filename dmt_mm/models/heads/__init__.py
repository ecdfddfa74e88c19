from .distill_heads import DMTSpatialAdaptor, DMTTokenHead
from .dmt_distill_head import DMTDistillHead

__all__ = ['DMTDistillHead', 'DMTTokenHead', 'DMTSpatialAdaptor']
