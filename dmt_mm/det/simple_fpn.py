"""SimpleFPN (ViTDet, Li et al. 2022): a feature pyramid from one stride-16 ViT map.

mmdet's wheel does not ship its ``projects/ViTDet``; this is the same neck built from mmcv
layers (detectron2's ``SimpleFeaturePyramid``): stride 4 by two deconvolutions (norm and
GELU between them), 8 by one, 16 as is, 32 by max-pooling; each level then gets a 1x1 and
a 3x3 conv, each followed by its norm and no activation (``act_cfg=None``, as both official
modules). Extra levels (``num_outs`` > 4) max-pool the top (``LastLevelMaxPool``).
"""
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule


@MODELS.register_module()
class SimpleFPN(BaseModule):

    def __init__(self, in_channels, out_channels, num_outs=5,
                 norm_cfg=dict(type='LN2d', requires_grad=True), act_cfg=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if num_outs < 4:
            raise ValueError(f'SimpleFPN builds 4 scales; num_outs={num_outs} is too few')
        self.num_outs = num_outs
        half, quarter = in_channels // 2, in_channels // 4
        self.scales = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(in_channels, half, 2, 2),
                          build_norm_layer(norm_cfg, half)[1], nn.GELU(),
                          nn.ConvTranspose2d(half, quarter, 2, 2)),
            nn.ConvTranspose2d(in_channels, half, 2, 2),
            nn.Identity(),
            nn.MaxPool2d(2, 2),
        ])
        widths = [quarter, half, in_channels, in_channels]
        self.lateral_convs = nn.ModuleList(
            ConvModule(w, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False)
            for w in widths)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg, inplace=False) for _ in widths)

    def forward(self, inputs):
        x = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        outs = [fpn(lateral(scale(x))) for scale, lateral, fpn in
                zip(self.scales, self.lateral_convs, self.fpn_convs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
