from .distill_heads import DMTSpatialAdaptor, DMTTokenHead

__all__ = ['DMTTokenHead', 'DMTSpatialAdaptor']
