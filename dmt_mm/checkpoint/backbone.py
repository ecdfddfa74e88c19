"""An mmpretrain-named ViT backbone state dict on its own: the architecture its weights
imply, a check that it is complete, and the backbone checkpoint file written from it.

The converters (``tools/model_converters``), the study and the feature tools all hand a bare
backbone from one place to another; what it is, and the file format every downstream config
reads (``init_cfg=dict(type='Pretrained', prefix='backbone.')``), is defined here once.
"""
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

from .format_errors import CheckpointFormatError
from .io import atomic_write
from .vit_layouts import check_vit_state_dict


def infer_vit_arch(state_dict: Mapping[str, torch.Tensor]) -> Dict:
    """ViT arguments (mmpretrain ``VisionTransformer`` / ``DMTViT``) matching an
    mmpretrain-named ViT state dict (heads count is not stored in weights: embed_dims // 64,
    the ViT convention)."""
    if 'patch_embed.projection.weight' not in state_dict:
        raise CheckpointFormatError('no patch_embed.projection.weight: not a ViT state dict')
    proj = state_dict['patch_embed.projection.weight']
    embed_dims, patch_size = proj.shape[0], proj.shape[-1]
    blocks = {int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')}
    if not blocks:
        raise CheckpointFormatError('no transformer blocks (layers.N.*) in the state dict')
    ffn = state_dict.get(f'layers.{min(blocks)}.ffn.layers.0.0.weight')
    with_cls = 'cls_token' in state_dict
    num_tokens = state_dict['pos_embed'].shape[1] - int(with_cls)
    grid = int(round(num_tokens ** 0.5))
    arch = dict(embed_dims=embed_dims, num_layers=max(blocks) + 1,
                num_heads=max(1, embed_dims // 64),
                feedforward_channels=ffn.shape[0] if ffn is not None else 4 * embed_dims)
    final_norm = 'ln1.weight' in state_dict
    return dict(arch=arch, patch_size=patch_size, img_size=grid * patch_size,
                with_cls_token=with_cls, final_norm=final_norm,
                out_type='avg_featmap' if 'ln2.weight' in state_dict else 'raw')


def describe_vit(kwargs: Dict) -> str:
    """One line for logs and meta, from :func:`infer_vit_arch` output (no head count: the
    weights do not fix it)."""
    arch = kwargs['arch']
    if not isinstance(arch, dict):
        return f"arch {arch!r}, patch {kwargs['patch_size']}, img {kwargs['img_size']}"
    return (f"{arch['embed_dims']} wide, {arch['num_layers']} blocks, ffn "
            f"{arch['feedforward_channels']}, patch {kwargs['patch_size']}, img "
            f"{kwargs['img_size']}, cls token {kwargs['with_cls_token']}, final norm "
            f"{kwargs['final_norm']}")


def validate_backbone(state_dict: Mapping[str, torch.Tensor], arch=None,
                      vit_cls=None) -> Dict:
    """Check that an mmpretrain-named state dict is a complete ViT, by loading its shapes
    into ``vit_cls`` (default: mmpretrain's ``VisionTransformer``; tools pass ``DMTViT``
    for its arch aliases) on the meta device, free even for ViT-B. ``arch`` defaults to
    the one the weights imply (a block missing in the middle still fails). Returns the
    ViT arguments used."""
    if vit_cls is None:
        from mmpretrain.models import VisionTransformer as vit_cls
    kwargs = infer_vit_arch(state_dict)
    if arch is not None:
        kwargs['arch'] = arch
    with torch.device('meta'):
        vit = vit_cls(**kwargs)
    check_vit_state_dict(vit, state_dict)
    return kwargs


def save_backbone_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str,
                             meta: Optional[Dict] = None):
    """Write ``{'state_dict': {'backbone.<key>': tensor}, 'meta': meta}`` atomically and
    signed: loadable by mmpretrain / mmdet / mmseg configs through
    ``init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.')`` and by
    ``FrozenViTTeacher`` (format 'mmpretrain')."""
    import io

    out = {'state_dict': OrderedDict(('backbone.' + k, v.detach().cpu().contiguous())
                                     for k, v in state_dict.items()),
           'meta': dict(meta or {})}
    buffer = io.BytesIO()
    torch.save(out, buffer)
    atomic_write(path, buffer.getvalue(), sign=True)
