"""A frozen self-supervised ViT teacher (MAE, MoCo v3, iBOT, DINO, any size).

The teacher is a ``DMTViT`` (mmpretrain ViT layout) built from ``backbone`` and filled from
``checkpoint`` -- an official MAE / MoCo v3 / iBOT / DINO file as published, or an
mmpretrain-layout file -- through :func:`dmt_mm.checkpoint.vit_layouts.load_vit_weights`.
Freezing, pixel re-normalisation and the output contract are
:class:`~dmt_mm.models.teachers.base.BaseFrozenTeacher`'s.
"""
from typing import Optional, Sequence

from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from .base import IMAGENET_MEAN, IMAGENET_STD, BaseFrozenTeacher


@MODELS.register_module()
class FrozenViTTeacher(BaseFrozenTeacher):
    """Frozen ViT teacher returning CLS token, patch tokens and chosen block outputs.

    Args:
        backbone: config of the teacher ViT (``DMTViT`` by default type).
        checkpoint: path of the teacher's weights; None only for tests / random teachers.
        checkpoint_format: 'auto', 'mae', 'mocov3', 'ibot', 'dino' or 'mmpretrain'.
        use_momentum_encoder: MoCo v3: take the momentum encoder instead of the base one.
        checkpoint_key: take the network under this key of a DINO / iBOT training
            checkpoint ('teacher' by default there, 'student' to override).
        name, mean, std, data_mean, data_std, out_layers, img_size, forward_chunk: see
            :class:`BaseFrozenTeacher`.
    """

    def __init__(self, backbone: dict, checkpoint: Optional[str] = None,
                 checkpoint_format: str = 'auto', name: str = 'teacher',
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 data_mean: Sequence[float] = IMAGENET_MEAN,
                 data_std: Sequence[float] = IMAGENET_STD,
                 out_layers: Sequence[int] = (), img_size: Optional[int] = None,
                 use_momentum_encoder: bool = False, checkpoint_key: Optional[str] = None,
                 forward_chunk: Optional[int] = None, init_cfg=None):
        backbone = dict(backbone)
        backbone.setdefault('type', 'DMTViT')
        backbone.setdefault('out_type', 'raw')
        # built in mmpretrain's scope whatever the caller's default scope is (e.g. a tool
        # or test that last used mmdet or mmseg)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            network = MODELS.build(backbone)
        super().__init__(network, checkpoint=checkpoint, name=name, mean=mean, std=std,
                         data_mean=data_mean, data_std=data_std, out_layers=out_layers,
                         img_size=img_size, forward_chunk=forward_chunk, init_cfg=init_cfg)
        self.checkpoint_format = checkpoint_format
        self.use_momentum_encoder = use_momentum_encoder
        self.checkpoint_key = checkpoint_key

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_embed.projection.kernel_size[0]

    def init_weights(self):
        """Load the teacher's checkpoint (official layouts are converted on the fly); without
        one (tests, toy runs) the ViT gets its normal random initialisation."""
        if self.checkpoint is None:
            self.backbone.init_weights()
            self.freeze()
            return
        from dmt_mm.checkpoint.vit_layouts import load_vit_weights
        load_vit_weights(self.backbone, self.checkpoint, fmt=self.checkpoint_format,
                         use_momentum_encoder=self.use_momentum_encoder,
                         checkpoint_key=self.checkpoint_key)
        self.freeze()

    def extra_repr(self) -> str:
        vit = self.backbone
        return (f'name={self.name!r}, frozen {type(vit).__name__}({vit.num_layers} blocks, '
                f'{vit.embed_dims} wide, patch {self.patch_size}), '
                f'checkpoint={self.checkpoint!r}')
