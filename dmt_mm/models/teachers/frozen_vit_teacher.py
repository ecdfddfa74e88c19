"""A frozen self-supervised ViT teacher: load once, never train, never save.

The teacher is a ``DMTViT`` (mmpretrain ViT layout) built from ``backbone`` and filled from
``checkpoint`` -- an official MAE / MoCo v3 / iBOT / DINO file as published, or an
mmpretrain-layout file -- through :func:`dmt_mm.checkpoint.formats.load_vit_weights`.

The ViT is held *outside* the module tree (``teacher.backbone`` still reaches it), so its
weights are not ``parameters()`` / ``state_dict()`` entries of any model that contains the
teacher. Consequences, all wanted: no optimizer constructor can pick them up, checkpoints
never carry them (and load back strictly), DDP neither broadcasts nor syncs them, and a
parent's ``requires_grad_()`` / ``apply(init_fn)`` cannot unfreeze or overwrite them.
``.to()`` / ``.cuda()`` / ``.half()`` still reach it (``_apply`` is forwarded).
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope
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
        checkpoint_key: take the network under this key of a DINO / iBOT training
            checkpoint ('teacher' by default there, 'student' to override).
    """

    def __init__(self, backbone: dict, checkpoint: Optional[str] = None,
                 checkpoint_format: str = 'auto', name: str = 'teacher',
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 data_mean: Sequence[float] = (123.675, 116.28, 103.53),
                 data_std: Sequence[float] = (58.395, 57.12, 57.375),
                 out_layers: Sequence[int] = (), img_size: Optional[int] = None,
                 use_momentum_encoder: bool = False, checkpoint_key: Optional[str] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        backbone = dict(backbone)
        backbone.setdefault('type', 'DMTViT')
        backbone.setdefault('out_type', 'raw')
        # a list: invisible to the module tree; built in mmpretrain's scope whatever the
        # caller's default scope is (e.g. a tool or test that last used mmdet or mmseg)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self._frozen = [MODELS.build(backbone)]
        self.name = name
        self.checkpoint = checkpoint
        self.checkpoint_format = checkpoint_format
        self.use_momentum_encoder = use_momentum_encoder
        self.checkpoint_key = checkpoint_key
        self.out_layers = [int(i) for i in out_layers]
        self.img_size = img_size
        mean = data_mean if mean is None else mean
        std = data_std if std is None else std
        # x_teacher = (x_data * data_std + data_mean - mean) / std = x_data * scale + shift
        scale = [ds / s for ds, s in zip(data_std, std)]
        shift = [(dm - m) / s for dm, m, s in zip(data_mean, mean, std)]
        self.renormalize = (any(abs(a - 1) > 1e-6 for a in scale)
                            or any(abs(b) > 1e-6 for b in shift))
        self.register_buffer('pixel_scale', torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_shift', torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_load_state_dict_pre_hook(self._drop_saved_teacher_weights)
        self.freeze()

    @property
    def backbone(self):
        return self._frozen[0]

    @property
    def embed_dims(self) -> int:
        return self.backbone.embed_dims

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_embed.projection.kernel_size[0]

    def freeze(self):
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.eval()

    def init_weights(self):
        """Load the teacher's checkpoint (official layouts are converted on the fly); without
        one (tests, toy runs) the ViT gets its normal random initialisation."""
        if self.checkpoint is None:
            self.backbone.init_weights()
            self.freeze()
            return
        from dmt_mm.checkpoint.formats import load_vit_weights
        load_vit_weights(self.backbone, self.checkpoint, fmt=self.checkpoint_format,
                         use_momentum_encoder=self.use_momentum_encoder,
                         checkpoint_key=self.checkpoint_key)
        self.freeze()

    def train(self, mode: bool = True):
        """A teacher always stays in eval mode (dropout, drop-path off)."""
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        """Device / dtype moves reach the hidden ViT too."""
        super()._apply(fn, *args, **kwargs)
        self.backbone._apply(fn, *args, **kwargs)
        return self

    @staticmethod
    def _drop_saved_teacher_weights(module, state_dict, prefix, *args):
        """Checkpoints that did store teacher weights still load: the teacher's weights
        always come from its own ``checkpoint`` file."""
        stale = [k for k in state_dict if k.startswith(prefix + 'backbone.')]
        for key in stale:
            state_dict.pop(key)
        if stale:
            print_log(f'{prefix}: ignored {len(stale)} saved teacher tensors; teachers load '
                      f'from their own checkpoint ({module.checkpoint})', logger='current')

    def extra_repr(self) -> str:
        vit = self.backbone
        return (f'name={self.name!r}, frozen {type(vit).__name__}({vit.num_layers} blocks, '
                f'{vit.embed_dims} wide, patch {self.patch_size}), '
                f'checkpoint={self.checkpoint!r}')

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> Dict:
        """inputs: images normalised by the data preprocessor, (B, 3, H, W)."""
        x = inputs.to(self.pixel_scale.dtype)  # float32 unless the teacher was cast
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
