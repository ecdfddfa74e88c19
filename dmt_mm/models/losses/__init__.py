from .distill_losses import (
                             CosineDistillLoss,
                             MixedDistillLoss,
                             MSEDistillLoss,
                             SmoothL1DistillLoss,
                             TokenDistillLoss,
)

__all__ = ['TokenDistillLoss', 'SmoothL1DistillLoss', 'MSEDistillLoss', 'CosineDistillLoss',
           'MixedDistillLoss']
