"""Per-teacher prediction modules of DMT.

* :class:`DMTTokenHead` (TFD): a 2-layer MLP applied to every token of the student's final
  sequence (CLS + patches), mapping D_s -> hidden -> D_k (teacher k's width).
* :class:`DMTSpatialAdaptor` (SFD): 3x3 conv - norm - GELU - 1x1 conv on the student's 2-D
  token map, so each prediction sees a 3x3 patch neighbourhood.

Both are discarded after pretraining (only the student backbone is transferred).
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DMTTokenHead(BaseModule):
    """Linear - GELU - Linear on token sequences (..., in_dims) -> (..., out_dims).

    Args:
        in_dims: student width D_s.
        out_dims: teacher width D_k.
        hidden_dims: hidden width; None uses ``out_dims``.
    """

    def __init__(self, in_dims: int, out_dims: int, hidden_dims: Optional[int] = None,
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)):
        super().__init__(init_cfg=init_cfg)
        hidden_dims = hidden_dims or out_dims
        self.fc1 = nn.Linear(in_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, out_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@MODELS.register_module()
class DMTSpatialAdaptor(BaseModule):
    """3x3 conv - norm - GELU - 1x1 conv on (B, in_channels, H, W) maps.

    Args:
        in_channels: student channels (D_s times the number of student blocks fused).
        out_channels: target channels (D_k times the number of teacher blocks fused).
        hidden_channels: width after the 3x3 conv; None uses ``out_channels``.
        norm_cfg: norm after the 3x3 conv; ``LN2d`` (channel LayerNorm) needs no
            cross-GPU statistics, unlike BN.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6), init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        hidden_channels = hidden_channels or out_channels
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)
        self.norm = build_norm_layer(norm_cfg, hidden_channels)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(hidden_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm(self.conv1(x))))
