"""Official self-supervised ViT checkpoints, as published, -> mmpretrain ``VisionTransformer``.

DMT's teachers are files users download from the original authors. They differ in the
container and the prefix around the encoder, and all name its tensors the timm way:

=========  ==========================================================  ====================
format     container (as published)                                    encoder prefix
=========  ==========================================================  ====================
mae        ``{'model': ...}`` (``_full`` files add the decoder)         none
mocov3     ``{'state_dict': ...}`` with both encoders and heads        ``module.base_encoder.``
                                                                       (or momentum_encoder)
ibot       ``{'state_dict': ...}``, or a training checkpoint with      none / ``backbone.`` /
           ``teacher`` / ``student``                                   ``module.backbone.``
dino       plain state dict, or a training checkpoint with             none / ``backbone.`` /
           ``teacher`` / ``student``                                   ``module.backbone.``
mmpretrain ``{'state_dict': ...}`` or plain, mmpretrain names           ``backbone.`` or none
=========  ==========================================================  ====================

:func:`convert_vit_state_dict` finds the encoder and renames it; :func:`load_vit_weights`
loads it into a ViT and refuses anything incomplete: a missing or unexpected backbone tensor
or a shape mismatch (wrong width, depth, patch size) raises :class:`CheckpointFormatError`
naming the keys and the likely fix. Keys deliberately left out (projection heads, the MAE
decoder, iBOT's ``masked_embed``, the other MoCo encoder, ...) are reported, never silently
dropped.

The teachers that load as timm models (DINOv2, CLIP, SigLIP, SAM) have their own
layouts in :mod:`.teacher_layouts`; a file of theirs given here is named and refused.
"""
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log

from .format_errors import (
    CheckpointFormatError,
    first_keys,
    mismatch_parts,
    not_a_vit,
    summarise_keys,
)
from .loading import safe_torch_load
from .teacher_layouts import refuse_other_family, strip_module

FORMATS = ('auto', 'mae', 'mocov3', 'ibot', 'dino', 'mmpretrain')

# timm-style name (the four official layouts) -> mmpretrain VisionTransformer name.
TIMM_RULES = [(re.compile(p), r) for p, r in [
    (r'^(cls_token|pos_embed)$', r'\1'),
    (r'^patch_embed\.proj\.(weight|bias)$', r'patch_embed.projection.\1'),
    (r'^blocks\.(\d+)\.norm1\.(weight|bias)$', r'layers.\1.ln1.\2'),
    (r'^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$', r'layers.\1.attn.qkv.\2'),
    (r'^blocks\.(\d+)\.attn\.proj\.(weight|bias)$', r'layers.\1.attn.proj.\2'),
    (r'^blocks\.(\d+)\.norm2\.(weight|bias)$', r'layers.\1.ln2.\2'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.(weight|bias)$', r'layers.\1.ffn.layers.0.0.\2'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.(weight|bias)$', r'layers.\1.ffn.layers.1.\2'),
    (r'^norm\.(weight|bias)$', r'ln1.\1'),          # final norm of the pretrained encoder
    (r'^fc_norm\.(weight|bias)$', r'ln2.\1'),       # global-pool norm (MAE fine-tuned)
]]
# Encoder-side tensors that are not part of the ViT encoder: heads, masking tokens, the MAE
# decoder. Reported as ignored; any other unknown key is an error.
_IGNORABLE = re.compile(r'^(head(\.|$)|pre_logits\.|masked_embed$|mask_token$|decoder_)')

_TIMM_PREFIXES = ('module.backbone.', 'backbone.', 'module.', '')
_PREFIXES = {
    'mae': ('', 'module.'),
    'mocov3': ('module.base_encoder.', 'base_encoder.'),
    'mocov3-momentum': ('module.momentum_encoder.', 'momentum_encoder.'),
    'ibot': _TIMM_PREFIXES,
    'dino': _TIMM_PREFIXES,
    'mmpretrain': ('backbone.', 'module.backbone.', ''),
}
_ANCHOR = {'timm': 'patch_embed.proj.weight', 'mmpretrain': 'patch_embed.projection.weight'}
_CONTAINERS = ('state_dict', 'model', 'teacher')  # tried in this order unless checkpoint_key


@dataclass
class ViTCheckpoint:
    """A ViT encoder found in a checkpoint, renamed to mmpretrain keys."""
    fmt: str                 # mae / mocov3 / ibot / dino / mmpretrain
    location: str            # where the encoder was, e.g. "['teacher'] prefix 'backbone.'"
    state_dict: 'OrderedDict[str, torch.Tensor]'
    ignored: List[str] = field(default_factory=list)   # source keys deliberately not used

    def summary(self) -> str:
        msg = (f'{self.fmt} layout, encoder at {self.location}: {len(self.state_dict)} '
               f'tensors')
        if self.ignored:
            msg += f'; ignored {len(self.ignored)} keys: {summarise_keys(self.ignored)}'
        return msg


def _unwrap(obj: Mapping, checkpoint_key: Optional[str]) -> Tuple[Mapping, str]:
    """The state dict inside the published container, and where it was."""
    if checkpoint_key is not None:
        if checkpoint_key not in obj or not isinstance(obj[checkpoint_key], Mapping):
            raise CheckpointFormatError(
                f'checkpoint_key={checkpoint_key!r} is not a state dict in this checkpoint; '
                f'its top-level keys are {first_keys(obj)}')
        return obj[checkpoint_key], f'[{checkpoint_key!r}]'
    for key in _CONTAINERS:
        if isinstance(obj.get(key), Mapping):
            return obj[key], f'[{key!r}]'
    return obj, 'the top level'


def _find_prefix(state_dict: Mapping, prefixes, names: str) -> Optional[str]:
    anchor = _ANCHOR[names]
    return next((p for p in prefixes if p + anchor in state_dict), None)


def _detect(checkpoint: Mapping, state_dict: Mapping, container: str,
            use_momentum_encoder: bool) -> str:
    """Which published layout this is (the renaming is shared by the timm-style four)."""
    moco = 'mocov3-momentum' if use_momentum_encoder else 'mocov3'
    if _find_prefix(state_dict, _PREFIXES[moco], 'timm') is not None:
        return 'mocov3'
    if _find_prefix(state_dict, _PREFIXES['mmpretrain'], 'mmpretrain') is not None:
        return 'mmpretrain'
    if _find_prefix(state_dict, _TIMM_PREFIXES, 'timm') is not None:
        if container == "['model']":
            return 'mae'
        if container == "['state_dict']":
            return 'ibot'
        # a DINO / iBOT training checkpoint: only iBOT's student has the masked-patch token
        networks = [state_dict] + [checkpoint[k] for k in ('student', 'teacher')
                                   if isinstance(checkpoint.get(k), Mapping)]
        if any(k.endswith('masked_embed') for network in networks for k in network):
            return 'ibot'
        return 'dino'
    raise CheckpointFormatError(not_a_vit(state_dict, container) or (
        f'unknown checkpoint layout: no ViT encoder (a "patch_embed.proj.weight" or '
        f'"patch_embed.projection.weight" key, possibly under a prefix) in {container}; its '
        f'first keys are {first_keys(state_dict)}. Supported: official MAE, MoCo v3, iBOT '
        f'and DINO ViT files as published, and mmpretrain ViT checkpoints. For a training '
        f'checkpoint holding several networks, choose one with checkpoint_key=...'))


def convert_vit_state_dict(checkpoint: Mapping, fmt: str = 'auto',
                           use_momentum_encoder: bool = False,
                           checkpoint_key: Optional[str] = None) -> ViTCheckpoint:
    """Find the ViT encoder in a loaded checkpoint and rename it to mmpretrain keys.

    Args:
        checkpoint: the object ``torch.load`` returned for the file as published.
        fmt: one of :data:`FORMATS`; 'auto' detects the layout.
        use_momentum_encoder: MoCo v3 only: take ``momentum_encoder`` instead of
            ``base_encoder`` (the authors evaluate and release the base encoder).
        checkpoint_key: take the state dict under this top-level key, e.g. 'student' of a
            DINO / iBOT training checkpoint (default there: 'teacher', which the authors
            evaluate).
    """
    if fmt not in FORMATS:
        raise CheckpointFormatError(f'unknown checkpoint format {fmt!r}; choose one of '
                                    f'{FORMATS}')
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(f'a checkpoint must be a dict, got {type(checkpoint)}')
    state_dict, container = _unwrap(checkpoint, checkpoint_key)
    refuse_other_family(strip_module(state_dict))
    if fmt == 'auto':
        fmt = _detect(checkpoint, state_dict, container, use_momentum_encoder)
    elif _find_prefix(state_dict, _PREFIXES['mmpretrain'], 'mmpretrain') is not None:
        # Already in mmpretrain layout (converted by our tools, or an mmpretrain model-zoo /
        # training checkpoint): configs that name the teacher's original format still work.
        fmt = 'mmpretrain'
    if use_momentum_encoder and fmt != 'mocov3':
        raise CheckpointFormatError(
            f'use_momentum_encoder applies to MoCo v3 checkpoints, this one is {fmt!r}; for a '
            'DINO / iBOT training checkpoint pick the network with checkpoint_key='
            "'teacher' (default) or 'student'")
    names = 'mmpretrain' if fmt == 'mmpretrain' else 'timm'
    prefixes = _PREFIXES['mocov3-momentum' if use_momentum_encoder else fmt]
    prefix = _find_prefix(state_dict, prefixes, names)
    if prefix is None:
        wanted = ' or '.join(repr(p + _ANCHOR[names]) for p in prefixes)
        raise CheckpointFormatError(not_a_vit(state_dict, container) or
            f'this is not a {fmt} checkpoint as published: no {wanted} in {container} (first '
            f'keys: {first_keys(state_dict)}). Check the file, or use format "auto".')

    converted, ignored, unknown = OrderedDict(), [], []
    for key, value in state_dict.items():
        if not key.startswith(prefix) or not isinstance(value, torch.Tensor):
            ignored.append(key)
            continue
        name = key[len(prefix):]
        if names == 'mmpretrain':
            new_name = name
        else:
            new_name = next((rule.sub(repl, name) for rule, repl in TIMM_RULES
                             if rule.match(name)), None)
        if _IGNORABLE.match(name):
            ignored.append(key)
        elif new_name is None:
            unknown.append(key)
        else:
            converted[new_name] = value
    if unknown:
        raise CheckpointFormatError(
            f'{len(unknown)} encoder tensors of this {fmt} checkpoint have no place in '
            f"mmpretrain's VisionTransformer: {summarise_keys(unknown)} (layer scale, "
            'register tokens or relative position biases are not supported here)')
    return ViTCheckpoint(fmt, f'{container} prefix {prefix!r}', converted, ignored)


def _hints(vit, state_dict) -> List[str]:
    """Likely causes of a mismatch, in the user's terms."""
    hints = []
    proj = state_dict.get('patch_embed.projection.weight')
    model_proj = vit.patch_embed.projection.weight
    if proj is not None and proj.shape[0] != model_proj.shape[0]:
        hints.append(f'the checkpoint is {proj.shape[0]} wide, the model {model_proj.shape[0]} '
                     "(ViT-T 192 = arch 'vit-tiny', ViT-S 384 = 'vit-small', ViT-B 768 = "
                     "'vit-base', ViT-L 1024 = 'vit-large'): set the backbone's arch to match")
    if proj is not None and proj.shape[-1] != model_proj.shape[-1]:
        hints.append(f'the checkpoint has patch size {proj.shape[-1]}, the model '
                     f'{model_proj.shape[-1]}: set patch_size={proj.shape[-1]}')
    blocks = sorted({int(k.split('.')[1]) for k in state_dict if k.startswith('layers.')})
    if blocks and (len(blocks) != vit.num_layers or blocks[-1] != vit.num_layers - 1):
        absent = sorted(set(range(max(vit.num_layers, blocks[-1] + 1))) - set(blocks))
        hints.append(f'the checkpoint has {len(blocks)} blocks (indices {blocks[0]}..'
                     f'{blocks[-1]}{", missing " + str(absent) if absent else ""}), the model '
                     f'{vit.num_layers}: a truncated file or a different arch')
    return hints


def check_vit_state_dict(vit: torch.nn.Module, state_dict: Mapping) -> Tuple[Dict, List[str]]:
    """Match an mmpretrain-named state dict against ``vit``.

    Returns the state dict to load strictly and the keys the model has no slot for by its
    own configuration (``cls_token`` without a CLS token, ``ln1`` without a final norm,
    ``ln2`` without global pooling). Raises :class:`CheckpointFormatError` on anything else.
    """
    expected = vit.state_dict()
    state_dict = dict(state_dict)
    optional = {'cls_token': getattr(vit, 'cls_token', None) is None}
    for name in ('ln1', 'ln2'):
        for suffix in ('weight', 'bias'):
            optional[f'{name}.{suffix}'] = f'{name}.{suffix}' not in expected
    dropped = [k for k, drop in optional.items() if drop and k in state_dict]
    if 'cls_token' in dropped and 'pos_embed' in state_dict:
        state_dict['pos_embed'] = state_dict['pos_embed'][:, 1:]  # its CLS position too
    for key in dropped:
        state_dict.pop(key)

    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = []
    for key in expected:
        if key not in state_dict or state_dict[key].shape == expected[key].shape:
            continue
        if key == 'pos_embed' and state_dict[key].shape[-1] == expected[key].shape[-1]:
            n = state_dict[key].shape[1] - getattr(vit, 'num_extra_tokens', 0)
            if int(round(n ** 0.5)) ** 2 == n:
                continue  # square grid of another size: the model's load hook resizes it
        mismatched.append(f'{key}: checkpoint {tuple(state_dict[key].shape)} vs model '
                          f'{tuple(expected[key].shape)}')
    if missing or unexpected or mismatched:
        parts = mismatch_parts(missing, unexpected, mismatched, _hints(vit, state_dict),
                                what='backbone keys')
        raise CheckpointFormatError('\n  '.join(['the checkpoint does not fit the ViT:'] + parts))
    return state_dict, dropped


def load_vit_weights(vit: torch.nn.Module, checkpoint, fmt: str = 'auto',
                     use_momentum_encoder: bool = False, checkpoint_key: Optional[str] = None,
                     logger='current') -> ViTCheckpoint:
    """Load an official (or mmpretrain) ViT checkpoint into an mmpretrain ViT, strictly.

    Args:
        vit: an mmpretrain ``VisionTransformer`` (e.g. ``DMTViT``).
        checkpoint: a path (read with weights-only safety) or an already loaded dict.
        fmt, use_momentum_encoder, checkpoint_key: see :func:`convert_vit_state_dict`.

    Returns the :class:`ViTCheckpoint` with the ignored keys (also logged).
    """
    source = checkpoint if isinstance(checkpoint, str) else '<in-memory checkpoint>'
    if isinstance(checkpoint, str):
        checkpoint = safe_torch_load(checkpoint)
    found = convert_vit_state_dict(checkpoint, fmt, use_momentum_encoder, checkpoint_key)
    try:
        state_dict, dropped = check_vit_state_dict(vit, found.state_dict)
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f'{source} ({found.fmt} layout, encoder at '
                                    f'{found.location}): {exc}') from None
    vit.load_state_dict(state_dict, strict=True)
    found.ignored += dropped
    print_log(f'loaded ViT weights from {osp.basename(source)}: {found.summary()}',
              logger=logger)
    return found
