"""Frozen teachers of other families -- DINOv2, OpenAI CLIP, OpenCLIP, SigLIP, SAM -- as timm
models filled from the files their authors publish.

timm implements these image encoders (DINOv2 with layer scale and registers, the CLIP /
OpenCLIP / SigLIP image towers with pre-norm and attention pooling, SAM's windowed
ViTDet-style encoder with relative positions and its neck) and, in each model file's
``checkpoint_filter_fn``, the conversion of the official weights. Nothing of their model
code is copied here: :class:`TimmEncoder` adapts a timm model to the token contract every
teacher offers (``forward_tokens``), and
:func:`dmt_mm.checkpoint.teacher_layouts.load_teacher_weights` finds, converts and strictly
loads the published file. Tests check each family's features
against the authors' code (``open-clip-torch``, ``segment-anything``, ``dinov2``) to 1e-4.

A teacher runs at its own resolution and patch size (``img_size``; e.g. DINOv2 p14 at 224
gives a 16 x 16 grid, SAM at 1024 a 64 x 64 grid); the target generator resizes its tokens
to the student's grid.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from dmt_mm.checkpoint.teacher_layouts import TEACHER_FAMILY_LAYOUTS

from .base import IMAGENET_MEAN, IMAGENET_STD, BaseFrozenTeacher

OPENAI_CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
OPENAI_CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)

# Per family: the default timm arch (ViT-B), input size, pixel normalisation (0-255 RGB) and
# summary. Sources: DINOv2 -- dinov2/data/transforms.py (ImageNet mean / std); OpenAI CLIP
# and OpenCLIP -- open_clip/constants.py OPENAI_DATASET_MEAN / STD (both use them); SigLIP --
# open_clip model_configs/ViT-B-16-SigLIP.json and timm's ``.webli`` cfg (0.5 / 0.5); SAM --
# segment_anything/build_sam.py pixel_mean / pixel_std.
TEACHER_FAMILIES = {
    'dinov2': dict(arch='vit_base_patch14_dinov2', img_size=224, mean=IMAGENET_MEAN,
                   std=IMAGENET_STD, summary='model'),
    'openai_clip': dict(arch='vit_base_patch16_clip_quickgelu_224', img_size=224,
                        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, summary='model'),
    'open_clip': dict(arch='vit_base_patch16_clip_224', img_size=224, mean=OPENAI_CLIP_MEAN,
                      std=OPENAI_CLIP_STD, summary='model'),
    'siglip': dict(arch='vit_base_patch16_siglip_224', img_size=224, mean=(127.5, ) * 3,
                   std=(127.5, ) * 3, summary='model'),
    'sam': dict(arch='samvit_base_patch16', img_size=1024, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                summary='avg'),
}
assert set(TEACHER_FAMILIES) == set(TEACHER_FAMILY_LAYOUTS)
SUMMARIES = ('model', 'avg', 'max')
FINAL_FEATURES = ('model', 'block')


class TimmEncoder(nn.Module):
    """A timm ``VisionTransformer`` / ``VisionTransformerSAM`` behind the token contract of
    ``DMTViT.forward_tokens`` (see :mod:`dmt_mm.models.teachers.base`).

    Args:
        arch: timm model name (``timm.create_model``), built without weights or classifier.
        img_size: the input size the model is built for.
        summary: ``'model'``: the model's own pooling (``forward_head(pre_logits=True)``: the
            CLS token of DINOv2 / CLIP, SigLIP's attention pool, an average for SAM);
            ``'avg'`` / ``'max'`` over the final patch tokens.
        final_features: ``'model'``: the model's final output (the final norm; SAM's 256-d
            neck); ``'block'``: the last block's raw output, like the intermediate blocks.
        model_kwargs: further ``timm.create_model`` arguments (e.g. smaller widths in tests,
            ``window_size`` / ``global_attn_indexes`` of a SAM variant).
    """

    def __init__(self, arch: str, img_size: int, summary: str = 'model',
                 final_features: str = 'model', model_kwargs: Optional[dict] = None):
        super().__init__()
        import timm
        from timm.models.vision_transformer import VisionTransformer
        from timm.models.vision_transformer_sam import VisionTransformerSAM
        if summary not in SUMMARIES:
            raise ValueError(f'summary {summary!r} is not one of {SUMMARIES}')
        if final_features not in FINAL_FEATURES:
            raise ValueError(f'final_features {final_features!r} is not one of {FINAL_FEATURES}')
        if not timm.is_model(arch):
            raise ValueError(f'{arch!r} is not a timm model name (timm {timm.__version__}); '
                             'e.g. vit_base_patch14_dinov2, vit_base_patch16_clip_224, '
                             'samvit_base_patch16 (docs/teachers.md)')
        self.arch = arch
        self.model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size,
                                       **dict(model_kwargs or {}))
        if not isinstance(self.model, (VisionTransformer, VisionTransformerSAM)):
            raise ValueError(f'{arch!r} builds a timm {type(self.model).__name__}; teachers '
                             'are timm VisionTransformer or VisionTransformerSAM models')
        self.is_sam = isinstance(self.model, VisionTransformerSAM)
        self.summary = summary
        self.final_features = final_features
        self.num_layers = len(self.model.blocks)
        self.block_dims = self.model.embed_dim
        self.embed_dims = (self.model.num_features if final_features == 'model'
                           else self.block_dims)
        self.num_extra_tokens = 0 if self.is_sam else self.model.num_prefix_tokens

    @property
    def patch_size(self) -> int:
        return self.model.patch_embed.patch_size[0]

    @property
    def grid(self):
        return tuple(self.model.patch_embed.grid_size)

    def forward_tokens(self, x: torch.Tensor, layers: Sequence[int] = (),
                       keep_index=None) -> Dict:
        if keep_index is not None:
            raise ValueError('timm teachers encode every patch (no keep_index)')
        last = self.num_layers - 1
        wanted = sorted({int(i) % self.num_layers for i in layers} | {last})
        model = self.model
        if self.is_sam:
            final, blocks = model.forward_intermediates(x, indices=wanted, output_fmt='NCHW')
            blocks = dict(zip(wanted, blocks))
            final_map = final if self.final_features == 'model' else blocks[last]
            grid = tuple(final_map.shape[-2:])
            tokens = final_map.flatten(2).transpose(1, 2)
            outs = {i: t.flatten(2).transpose(1, 2) for i, t in blocks.items()}
            head_input = final_map
        else:
            final, blocks = model.forward_intermediates(
                x, indices=wanted, return_prefix_tokens=True, output_fmt='NLC')
            outs = {i: torch.cat(b[::-1], dim=1) if isinstance(b, tuple) else b
                    for i, b in zip(wanted, blocks)}
            tokens = final if self.final_features == 'model' else outs[last]
            grid = tuple(model.patch_embed.dynamic_feat_size(x.shape[-2:]))
            head_input = tokens
        if self.summary == 'model':
            summary = model.forward_head(head_input, pre_logits=True)
        else:
            patches = tokens[:, self.num_extra_tokens:]
            summary = patches.mean(dim=1) if self.summary == 'avg' else patches.amax(dim=1)
        requested = {int(i) % self.num_layers for i in layers}
        return dict(tokens=tokens, layers={i: outs[i] for i in sorted(requested)}, grid=grid,
                    num_extra_tokens=self.num_extra_tokens, summary=summary)


@MODELS.register_module()
class TimmTeacher(BaseFrozenTeacher):
    """Frozen DINOv2 / OpenAI CLIP / OpenCLIP / SigLIP / SAM teacher from the published file.

    Args:
        family: ``'dinov2'``, ``'openai_clip'``, ``'open_clip'``, ``'siglip'`` or ``'sam'``:
            which published layouts the checkpoint may have, and the defaults below.
        arch: timm model name; default the family's ViT-B (docs/teachers.md lists S/L/g/H).
            Attention heads and the activation are not stored in the weights: the arch
            fixes them (OpenAI CLIP uses QuickGELU: ``*_clip_quickgelu_*``).
        checkpoint: the file as published (``dinov2_vitb14_pretrain.pth``, OpenAI
            ``ViT-B-16.pt``, ``open_clip_pytorch_model.bin`` / ``.safetensors``,
            ``sam_vit_b_01ec64.pth``, ...); None only for tests / random teachers.
        checkpoint_format: 'auto' or a layout of
            :data:`dmt_mm.checkpoint.teacher_layouts.TEACHER_LAYOUTS`.
        img_size: the teacher's input size (inputs are resized to it); family default.
        mean / std: the teacher's pixel normalisation (0-255 RGB); family default.
        summary: the summary token (``'model'`` / ``'avg'`` / ``'max'``, see
            :class:`TimmEncoder`); family default (SAM, without CLS token: ``'avg'``).
        final_features: ``'model'`` (default) or ``'block'`` (see :class:`TimmEncoder`).
        model_kwargs: further ``timm.create_model`` arguments.
        name, data_mean, data_std, out_layers, forward_chunk: see :class:`BaseFrozenTeacher`.
    """

    def __init__(self, family: str, arch: Optional[str] = None,
                 checkpoint: Optional[str] = None, checkpoint_format: str = 'auto',
                 name: str = 'teacher', img_size: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 data_mean: Sequence[float] = IMAGENET_MEAN,
                 data_std: Sequence[float] = IMAGENET_STD,
                 summary: Optional[str] = None, final_features: str = 'model',
                 model_kwargs: Optional[dict] = None, out_layers: Sequence[int] = (),
                 forward_chunk: Optional[int] = None, init_cfg=None):
        if family not in TEACHER_FAMILIES:
            raise ValueError(f'teacher {name!r}: family {family!r} is not one of '
                             f'{sorted(TEACHER_FAMILIES)}')
        defaults = TEACHER_FAMILIES[family]
        arch = arch or defaults['arch']
        img_size = int(img_size or defaults['img_size'])
        network = TimmEncoder(arch, img_size, summary or defaults['summary'], final_features,
                              model_kwargs)
        if family == 'openai_clip' and 'QuickGELU' not in type(
                network.model.blocks[0].mlp.act).__name__:
            raise ValueError(f'teacher {name!r}: OpenAI CLIP uses QuickGELU, {arch!r} does not '
                             '(the weights load, the features would be wrong): use the '
                             '*_clip_quickgelu_* arch, e.g. vit_base_patch16_clip_quickgelu_224')
        super().__init__(network, checkpoint=checkpoint, name=name,
                         mean=defaults['mean'] if mean is None else mean,
                         std=defaults['std'] if std is None else std,
                         data_mean=data_mean, data_std=data_std, out_layers=out_layers,
                         img_size=img_size, forward_chunk=forward_chunk, init_cfg=init_cfg)
        self.family = family
        self.checkpoint_format = checkpoint_format

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_size

    def init_weights(self):
        """Load the published file (converted on the fly); without one (tests, toy runs)
        the network keeps timm's random initialisation."""
        if self.checkpoint is not None:
            from dmt_mm.checkpoint.teacher_layouts import load_teacher_weights
            load_teacher_weights(self.backbone.model, self.checkpoint, self.family,
                                 self.checkpoint_format)
        self.freeze()

    def extra_repr(self) -> str:
        net = self.backbone
        return (f'name={self.name!r}, family={self.family!r}, frozen timm {net.arch} '
                f'({net.num_layers} blocks, {net.embed_dims} wide, patch {self.patch_size}, '
                f'{self.img_size} px), checkpoint={self.checkpoint!r}')
