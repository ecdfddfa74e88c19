"""A frozen self-supervised ViT teacher: load once, never train, never save.

The teacher is a ``DMTViT`` (mmpretrain ViT layout) built from ``backbone`` and filled from
``checkpoint`` -- an official MAE / MoCo v3 / iBOT / DINO file as published, or an
mmpretrain-layout file -- through :func:`dmt_mm.utils.checkpoint_formats.load_vit_weights`.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class FrozenViTTeacher(BaseModule):
    """Frozen ViT teacher returning CLS token, patch tokens and chosen block outputs.

    Args:
        backbone: config of the teacher ViT (``DMTViT`` by default type).
        checkpoint: path of the teacher's weights; None only for tests / random teachers.
        checkpoint_format: 'auto', 'mae', 'mocov3', 'ibot', 'dino' or 'mmpretrain'.
        name: short name used in loss keys (``loss_tfd_<name>``).
        mean / std: the teacher's own pixel normalisation (0-255 scale, RGB). When they
            differ from ``data_mean`` / ``data_std`` (the data preprocessor's), inputs are
            re-normalised before the teacher sees them.
        out_layers: 0-based block indices whose patch tokens are also returned.
        img_size: resize inputs to this size first (e.g. a patch-14 teacher at 224).
        use_momentum_encoder: MoCo v3: take the momentum encoder instead of the base one.
    """

    def __init__(self, backbone: dict, checkpoint: Optional[str] = None,
                 checkpoint_format: str = 'auto', name: str = 'teacher',
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 data_mean: Sequence[float] = (123.675, 116.28, 103.53),
                 data_std: Sequence[float] = (58.395, 57.12, 57.375),
                 out_layers: Sequence[int] = (), img_size: Optional[int] = None,
                 use_momentum_encoder: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        backbone = dict(backbone)
        backbone.setdefault('type', 'DMTViT')
        backbone.setdefault('out_type', 'raw')
        self.backbone = MODELS.build(backbone)
        self.name = name
        self.checkpoint = checkpoint
        self.checkpoint_format = checkpoint_format
        self.use_momentum_encoder = use_momentum_encoder
        self.out_layers = [int(i) for i in out_layers]
        self.img_size = img_size
        mean = data_mean if mean is None else mean
        std = data_std if std is None else std
        # x_teacher = (x_data * data_std + data_mean - mean) / std = x_data * scale + shift
        scale = [ds / s for ds, s in zip(data_std, std)]
        shift = [(dm - m) / s for dm, m, s in zip(data_mean, mean, std)]
        self.renormalize = any(abs(a - 1) > 1e-6 for a in scale) or any(abs(b) > 1e-6 for b in shift)
        self.register_buffer('pixel_scale', torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_shift', torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    @property
    def embed_dims(self) -> int:
        return self.backbone.embed_dims

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_embed.projection.kernel_size[0]

    def freeze(self):
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def init_weights(self):
        """Load the teacher's checkpoint (official layouts are converted on the fly)."""
        if self.checkpoint is None:
            return
        from dmt_mm.utils.checkpoint_formats import load_vit_weights
        load_vit_weights(self.backbone, self.checkpoint, fmt=self.checkpoint_format,
                         use_momentum_encoder=self.use_momentum_encoder)
        self.freeze()

    def train(self, mode: bool = True):
        """A teacher always stays in eval mode (dropout, drop-path off)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> Dict:
        """inputs: images normalised by the data preprocessor, (B, 3, H, W)."""
        x = inputs.float()
        if self.renormalize:
            x = x * self.pixel_scale + self.pixel_shift
        if self.img_size is not None and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bicubic',
                              align_corners=False)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                            enabled=x.device.type == 'cuda'):
            out = self.backbone.forward_tokens(x, layers=self.out_layers)
        extra = out['num_extra_tokens']
        tokens = out['tokens'].float()
        return dict(
            cls=tokens[:, 0] if extra > 0 else tokens.mean(dim=1),
            patch=tokens[:, extra:],
            layers={i: t[:, extra:].float() for i, t in out['layers'].items()},
            grid=out['grid'])
