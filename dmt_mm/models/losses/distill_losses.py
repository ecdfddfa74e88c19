"""Feature-distillation losses that return one value per sample.

DMT needs per-sample values (not a batch scalar) because teacher dropping and masked-token
losses weight samples and tokens differently; the algorithm reduces over the batch. Every
loss is computed in float32 (AMP-safe) on the whole batched tensor: no loops over tokens.

``forward(pred, target, weight=None)``: ``pred`` / ``target`` are (B, N, C) token sequences
or (B, C) single tokens; ``weight`` (B, N) optionally weighs tokens (e.g. 1 on masked
patches, 0 elsewhere). Returns (B,): the weighted mean over tokens of the per-token loss.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


class TokenDistillLoss(nn.Module):
    """Base class: subclasses define :meth:`per_token` -> (B, N)."""

    def per_token(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f'{type(self).__name__}: prediction {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} differ in shape')
        if pred.dim() == 2:
            pred, target = pred.unsqueeze(1), target.unsqueeze(1)
        loss = self.per_token(pred.float(), target.float())
        if weight is None:
            return loss.mean(dim=1)
        weight = weight.to(loss.dtype)
        return (loss * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-6)


@MODELS.register_module()
class SmoothL1DistillLoss(TokenDistillLoss):
    """Smooth-L1 (Huber / beta) averaged over channels; beta 2.0 as in Feature Distillation."""

    def __init__(self, beta: float = 2.0):
        super().__init__()
        self.beta = float(beta)

    def per_token(self, pred, target):
        return F.smooth_l1_loss(pred, target, beta=self.beta, reduction='none').mean(dim=-1)


@MODELS.register_module()
class MSEDistillLoss(TokenDistillLoss):
    """Squared error averaged over channels."""

    def per_token(self, pred, target):
        return (pred - target).pow(2).mean(dim=-1)


@MODELS.register_module()
class CosineDistillLoss(TokenDistillLoss):
    """1 - cosine similarity of each predicted token with its target token."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def per_token(self, pred, target):
        return 1 - F.cosine_similarity(pred, target, dim=-1, eps=self.eps)


@MODELS.register_module()
class MixedDistillLoss(TokenDistillLoss):
    """Weighted sum of other distillation losses, e.g. smooth-L1 + cosine (as in VKD/UNIC).

    Args:
        losses: configs of the member losses.
        weights: one weight per member (default: all 1).
    """

    def __init__(self, losses: Sequence[dict], weights: Optional[Sequence[float]] = None):
        super().__init__()
        if not losses:
            raise ValueError('MixedDistillLoss needs at least one member loss in `losses`')
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(losses):
            raise ValueError(f'MixedDistillLoss: {len(losses)} losses but {len(weights)} weights')
        self.members = nn.ModuleList(
            loss if isinstance(loss, nn.Module) else MODELS.build(loss) for loss in losses)
        self.weights = weights

    def per_token(self, pred, target):
        return sum(w * m.per_token(pred, target) for w, m in zip(self.weights, self.members))
