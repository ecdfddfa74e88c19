"""The dense linear probe: BatchNorm + 1x1 convolution on frozen patch tokens.

Transcribed from ``BNHead`` of facebookresearch/dinov2
``dinov2/eval/segmentation/models/decode_heads/linear_head.py`` (commit
b8931f7bf91576930313be2c6d6af376033b35f0): the chosen backbone outputs are resized to the
first one's grid (bilinear) and concatenated (``input_transform='resize_concat'``, DINOv2's
"4 last layers" option) or one output is taken as is, normalised by a BatchNorm over
channels, and classified per token by ``conv_seg`` (1x1 convolution). The logits are upsampled
bilinearly to the label size by mmseg's ``BaseDecodeHead`` (loss and prediction), and mIoU
comes from mmseg's ``IoUMetric``. DINOv2's CLS-token inputs and ``resize_factors`` are not
used by its ADE20K linear configs and are left out.
"""
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class BNLinearHead(BaseDecodeHead):
    """Linear segmentation head: ``conv_seg(BN(features))``; ``channels`` must equal the
    input channels (their sum with ``resize_concat``), as DINOv2 asserts."""

    def __init__(self, **kwargs):
        kwargs.setdefault('norm_cfg', dict(type='SyncBN', requires_grad=True))
        super().__init__(**kwargs)
        if self.in_channels != self.channels:
            raise ValueError(f'BNLinearHead classifies the backbone features directly: '
                             f'channels ({self.channels}) must equal the input channels '
                             f'({self.in_channels})')
        self.bn = build_norm_layer(self.norm_cfg, self.in_channels)[1]

    def forward(self, inputs):
        return self.cls_seg(self.bn(self._transform_inputs(inputs)))
