"""Teachers of other families: DINOv2, OpenAI CLIP / OpenCLIP / SigLIP image towers, SAM.

These load into timm models (``TimmTeacher``). The renaming is timm's own: each timm model
file's ``checkpoint_filter_fn`` converts the authors' published layout (DINOv2 hub files,
OpenAI's CLIP TorchScript archives, OpenCLIP / SigLIP state dicts as ``.bin`` or
``.safetensors``, SAM checkpoints); what is added here is finding the layout, refusing files
of another family or of no image tower in one line, DINOv2's own resizing of its position
table, and a strict, explained load.

:func:`load_teacher_weights` reads the file (:func:`read_teacher_file`), recognises its
layout (:func:`identify_teacher_layout`), resizes DINOv2's position table the authors' way
(:func:`dinov2_resize_pos_embed`), converts with timm's own ``checkpoint_filter_fn`` and
loads strictly.
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

TEACHER_LAYOUTS = ('auto', 'dinov2', 'clip', 'open_clip_timm', 'sam', 'timm')
LAYOUT_NAMES = {
    'dinov2': 'DINOv2 (hub state dict, e.g. dinov2_vitb14_pretrain.pth)',
    'clip': 'OpenAI CLIP / OpenCLIP (ViT-B-16.pt, open_clip_pytorch_model.bin)',
    'open_clip_timm': 'OpenCLIP with a timm image tower (SigLIP open_clip_pytorch_model.bin)',
    'sam': 'Segment Anything (sam_vit_b_01ec64.pth)',
    'timm': 'timm-named image encoder (e.g. a timm hub model.safetensors)',
}
# the layouts each teacher family accepts, and where its image encoder sits in the file
TEACHER_FAMILY_LAYOUTS = {
    'dinov2': ('dinov2', 'timm'),
    'openai_clip': ('clip', 'timm'),
    'open_clip': ('clip', 'open_clip_timm', 'timm'),
    'siglip': ('open_clip_timm', 'timm'),
    'sam': ('sam', 'timm'),
}
_LAYOUT_FAMILIES = {'dinov2': "family='dinov2'",
                    'clip': "family='openai_clip' (OpenAI) or 'open_clip'",
                    'open_clip_timm': "family='siglip' (or 'open_clip')",
                    'sam': "family='sam'", 'timm': 'the family the file was trained as'}
_ENCODER_PREFIX = {'dinov2': '', 'clip': 'visual.', 'open_clip_timm': 'visual.trunk.',
                   'sam': 'image_encoder.', 'timm': ''}
# converted keys the teacher has no use for (CLIP's projection becomes timm's 'head.*')
_TEACHER_IGNORABLE = re.compile(r'^(head\.|mask_token$)')


@dataclass
class TeacherCheckpoint:
    """A teacher image encoder found in a checkpoint, in the timm model's key names."""
    layout: str
    source: str              # 'TorchScript archive', 'safetensors', 'torch file', ...
    state_dict: Dict[str, torch.Tensor]
    ignored: List[str] = field(default_factory=list)   # source keys deliberately not used

    def summary(self) -> str:
        msg = f'{self.layout} layout ({self.source}): {len(self.state_dict)} tensors'
        if self.ignored:
            msg += f'; ignored {len(self.ignored)} keys: {summarise_keys(self.ignored, 6)}'
        return msg


def _is_torchscript(path: str) -> bool:
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith('/constants.pkl') or n == 'constants.pkl'
                   for n in archive.namelist())


def read_teacher_file(path: str) -> Tuple[Dict, str]:
    """The tensors of a published teacher file and what kind of file it was.

    ``.safetensors`` files are read with safetensors; OpenAI's CLIP releases are TorchScript
    archives, read with ``torch.jit.load`` (TorchScript's own loader: only the archive's
    tensors are used, none of its code runs); everything else goes through
    :func:`~dmt_mm.checkpoint.loading.safe_torch_load` (weights-only)."""
    import warnings

    from .loading import _corrupt
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'teacher checkpoint {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path), 'safetensors'
        except Exception as exc:  # noqa: BLE001 -- any failure means an unreadable file
            raise _corrupt(path, f'safetensors cannot read it: {str(exc)[:120]}') from None
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # torch.jit's deprecation notice
            try:
                archive = torch.jit.load(path, map_location='cpu')
            except RuntimeError as exc:
                raise _corrupt(path, f'torch.jit.load fails: {str(exc).splitlines()[0][:120]}'
                               ) from None
        return dict(archive.state_dict()), 'TorchScript archive'
    return safe_torch_load(path), 'torch file'


def strip_module(state_dict: Mapping) -> Mapping:
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    return state_dict


def identify_teacher_layout(state_dict: Mapping) -> Tuple[Optional[str], Optional[str]]:
    """(layout, the key that shows it) of a teacher state dict, (None, None) when no
    layout fits. Files that are recognisably not an image tower we can use raise
    :class:`CheckpointFormatError` naming the file to take instead."""
    keys = list(state_dict)

    def first(pattern):
        return next((k for k in keys if re.search(pattern, k)), None)

    if 'image_encoder.patch_embed.proj.weight' in state_dict:
        return 'sam', 'image_encoder.patch_embed.proj.weight'
    if 'visual.class_embedding' in state_dict:
        return 'clip', 'visual.class_embedding'
    if 'visual.trunk.patch_embed.proj.weight' in state_dict:
        return 'open_clip_timm', 'visual.trunk.patch_embed.proj.weight'
    if 'blocks.0.ls1.gamma' in state_dict and ('mask_token' in state_dict
                                               or 'register_tokens' in state_dict):
        return 'dinov2', 'mask_token' if 'mask_token' in state_dict else 'register_tokens'
    hit = first(r'^(vision_model|text_model)\.')
    if hit is not None:
        raise CheckpointFormatError(
            f'this is a Hugging Face transformers file (e.g. {hit!r}), not a file of the '
            'official code: take the OpenCLIP file of the same model (open_clip_pytorch_model'
            ".bin or open_clip_model.safetensors) or OpenAI's ViT-B-16.pt")
    hit = first(r'^visual\.layer\d\.')
    if hit is not None:
        raise CheckpointFormatError(
            f'this is a ResNet CLIP image tower (e.g. {hit!r}); DMT teachers are Vision '
            'Transformers: take the ViT file (OpenAI: ViT-B-16.pt)')
    hit = first(r'^image_encoder\.trunk\.')
    if hit is not None:
        raise CheckpointFormatError(
            f'this is a SAM 2 checkpoint (Hiera image encoder, e.g. {hit!r}), which is not '
            "supported: take SAM's ViT file sam_vit_b_01ec64.pth")
    hit = first(r'^(token_embedding\.|text_projection$|text\.|transformer\.resblocks\.)')
    if hit is not None and first(r'^visual\.') is None:
        raise CheckpointFormatError(
            f'this file holds a CLIP text tower only (e.g. {hit!r}, no visual.* image tower); '
            'the teacher needs the image tower: download the full model file (OpenAI '
            'ViT-B-16.pt, OpenCLIP / SigLIP open_clip_pytorch_model.bin)')
    if 'patch_embed.proj.weight' in state_dict:
        return 'timm', 'patch_embed.proj.weight'
    return None, None


def refuse_other_family(state_dict: Mapping) -> None:
    """A DINOv2 / CLIP / SigLIP / SAM file given to the plain-ViT loader: say which
    teacher type loads it."""
    layout, evidence = identify_teacher_layout(state_dict)
    if layout not in (None, 'timm'):
        raise CheckpointFormatError(
            f'this is a {LAYOUT_NAMES[layout]} checkpoint (key {evidence!r}), not a plain '
            f"ViT: load it with type='TimmTeacher', {_LAYOUT_FAMILIES[layout]} "
            '(docs/teachers.md); FrozenViTTeacher takes MAE, MoCo v3, iBOT and DINO files')


def dinov2_resize_pos_embed(pos_embed: torch.Tensor, grid: Tuple[int, int],
                            offset: float = 0.1) -> torch.Tensor:
    """DINOv2's own resizing of its position table (facebookresearch/dinov2,
    ``dinov2/models/vision_transformer.py``, ``interpolate_pos_encoding`` with the hub's
    ``interpolate_offset=0.1``, ``interpolate_antialias=False``): bicubic with scale factors
    ``(grid + 0.1) / M`` from the M x M table, in float32. The leading non-grid positions
    (the CLS position) are kept. timm's own resampling (size-based, antialiased) gives other
    values, so a DINOv2 teacher at 224 px would not see the authors' features."""
    import math

    import torch.nn.functional as F
    length, dim = pos_embed.shape[1], pos_embed.shape[2]
    side = math.isqrt(length)
    extra = length - side * side
    if extra not in (0, 1) or side * side + extra != length:
        raise CheckpointFormatError(f'DINOv2 position table of {length} positions is not a '
                                    'square grid (with or without a CLS position)')
    if (side, side) == tuple(grid):
        return pos_embed
    prefix, patch = pos_embed[:, :extra], pos_embed[:, extra:]
    patch = patch.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = ((grid[0] + offset) / side, (grid[1] + offset) / side)
    patch = F.interpolate(patch, scale_factor=scale, mode='bicubic', antialias=False)
    if tuple(patch.shape[-2:]) != tuple(grid):
        raise CheckpointFormatError(f'DINOv2 position table: resizing {side}x{side} gave '
                                    f'{tuple(patch.shape[-2:])}, not {tuple(grid)}')
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([prefix.float(), patch], dim=1).to(pos_embed.dtype)


def _check_registers(state_dict: Mapping, model: torch.nn.Module) -> None:
    """DINOv2 with / without register tokens: the file and the arch must agree."""
    tokens = state_dict.get('register_tokens', state_dict.get('reg_token'))
    regs = 0 if tokens is None else tokens.shape[1]
    own = getattr(model, 'reg_token', None)
    model_regs = 0 if own is None else own.shape[1]
    if regs != model_regs:
        size = {384: 'small', 768: 'base', 1024: 'large', 1536: 'giant'}.get(
            model.embed_dim, 'base')
        raise CheckpointFormatError(
            f'the checkpoint has {regs} register tokens, the teacher {model_regs}: use the '
            f'arch vit_{size}_patch14_{"reg4_" if regs else ""}dinov2'
            f'{" (or another register count via model_kwargs.reg_tokens)" if regs else ""}')


def _timm_filter(model: torch.nn.Module):
    """The ``checkpoint_filter_fn`` of the timm model file that defines ``model``."""
    import sys
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, 'checkpoint_filter_fn', None)
    if fn is None:
        raise CheckpointFormatError(f'{type(model).__name__} ({type(model).__module__}) has no '
                                    'timm checkpoint_filter_fn to convert official files')
    return fn


def convert_teacher_state_dict(checkpoint: Mapping, family: str, model: torch.nn.Module,
                               fmt: str = 'auto', source: str = 'in memory'
                               ) -> TeacherCheckpoint:
    """A published teacher file (as loaded) -> the timm ``model``'s state dict.

    Args:
        checkpoint: what :func:`read_teacher_file` returned (a state dict, possibly inside
            ``{'state_dict': ...}`` / ``{'model': ...}`` and under ``module.``).
        family: the teacher family (:data:`TEACHER_FAMILY_LAYOUTS`).
        model: the timm model the weights are for (its file's ``checkpoint_filter_fn``
            does the renaming; DINOv2 position tables are resized to its grid first).
        fmt: one of :data:`TEACHER_LAYOUTS`; 'auto' detects it.
    """
    if family not in TEACHER_FAMILY_LAYOUTS:
        raise CheckpointFormatError(f'unknown teacher family {family!r}; choose one of '
                                    f'{sorted(TEACHER_FAMILY_LAYOUTS)}')
    if fmt not in TEACHER_LAYOUTS:
        raise CheckpointFormatError(f'unknown teacher checkpoint format {fmt!r}; choose one '
                                    f'of {TEACHER_LAYOUTS}')
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(f'a checkpoint must be a dict, got {type(checkpoint)}')
    state_dict = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(state_dict.get(key), Mapping):
            state_dict = state_dict[key]
            break
    state_dict = {k: v for k, v in strip_module(state_dict).items()}
    layout, evidence = identify_teacher_layout(state_dict)
    if layout is None:
        raise CheckpointFormatError(not_a_vit(state_dict, 'the file') or (
            f'unknown teacher checkpoint layout (first keys: {first_keys(state_dict)}); '
            f'supported: ' + '; '.join(LAYOUT_NAMES.values())))
    if fmt != 'auto' and fmt != layout:
        raise CheckpointFormatError(f'checkpoint_format={fmt!r}, but the file is a '
                                    f'{LAYOUT_NAMES[layout]} file (key {evidence!r}); use '
                                    f"checkpoint_format='auto' or {layout!r}")
    if layout not in TEACHER_FAMILY_LAYOUTS[family]:
        raise CheckpointFormatError(
            f'the file is a {LAYOUT_NAMES[layout]} checkpoint (key {evidence!r}), but the '
            f'teacher is configured as family={family!r}: set {_LAYOUT_FAMILIES[layout]} '
            'with its arch (docs/teachers.md), or give this teacher its own file')
    prefix = _ENCODER_PREFIX[layout]
    ignored = [k for k in state_dict if not k.startswith(prefix)]
    if family == 'dinov2':
        _check_registers(state_dict, model)
        table = state_dict.get('pos_embed')
        if table is not None:
            state_dict['pos_embed'] = dinov2_resize_pos_embed(
                table, tuple(model.patch_embed.grid_size))
    try:
        converted = _timm_filter(model)(dict(state_dict), model)
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        hints = '; '.join('likely cause: ' + h for h in _teacher_hints(model, state_dict))
        raise CheckpointFormatError(f'the {LAYOUT_NAMES[layout]} file does not convert to '
                                    f'the teacher ({str(exc).splitlines()[0][:160]})'
                                    + (f'; {hints}' if hints else '')) from None
    expected = model.state_dict()
    for key in [k for k in converted if k not in expected and _TEACHER_IGNORABLE.match(k)]:
        converted.pop(key)
        ignored.append(key if layout != 'clip' else 'visual.proj')
    ignored += [k for k in ('mask_token',) if k in state_dict]
    return TeacherCheckpoint(layout, source, converted, sorted(set(ignored)))


def _teacher_hints(model: torch.nn.Module, state_dict: Mapping) -> List[str]:
    """Likely causes of a teacher checkpoint mismatch, in the user's terms."""
    hints, own = [], model.state_dict()

    def shape(sd, key, dim):
        return sd[key].shape[dim] if key in sd and sd[key].dim() > dim else None

    width, model_width = (shape(sd, 'patch_embed.proj.weight', 0) for sd in (state_dict, own))
    if width is not None and width != model_width:
        hints.append(f'the checkpoint is {width} wide, the teacher {model_width}: choose the '
                     'arch of that size (S 384, B 768, L 1024, g 1536; SAM-B 768, -L 1024, '
                     '-H 1280)')
    patch, model_patch = (shape(sd, 'patch_embed.proj.weight', 3) for sd in (state_dict, own))
    if patch is not None and patch != model_patch:
        hints.append(f'the checkpoint has patch size {patch}, the teacher {model_patch}: choose '
                     'the arch with that patch size')
    depth = len({k.split('.')[1] for k in state_dict if k.startswith('blocks.')})
    if depth and depth != len(model.blocks):
        hints.append(f'the checkpoint has {depth} blocks, the teacher {len(model.blocks)}: '
                     'choose the arch of that depth')
    regs, model_regs = (shape(sd, 'reg_token', 1) or 0 for sd in (state_dict, own))
    if regs != model_regs:
        hints.append(f'the checkpoint has {regs} register tokens, the teacher {model_regs}: '
                     f'choose the arch with {regs} (e.g. vit_base_patch14_'
                     f'{"reg4_" if regs else ""}dinov2)')
    hidden, model_hidden = (shape(sd, 'blocks.0.mlp.fc1.weight', 0) for sd in (state_dict, own))
    if hidden is not None and model_hidden is not None and hidden != model_hidden:
        hints.append(f'the MLP is {hidden} wide in the checkpoint, {model_hidden} in the '
                     'teacher: set model_kwargs.mlp_ratio (DINOv2 ViT-g: arch '
                     'vit_giant_patch14_dinov2, SwiGLU)')
    if any(k.endswith(('rel_pos_h', 'rel_pos_w')) and k in own and own[k].shape != v.shape
           for k, v in state_dict.items()):
        hints.append("SAM's relative-position tables do not fit: img_size, window_size and "
                     'global_attn_indexes must be those of the checkpoint (SAM ViT-B: 1024, '
                     '14, [2, 5, 8, 11])')
    return hints


def check_teacher_state_dict(model: torch.nn.Module, state_dict: Mapping) -> None:
    """Raise :class:`CheckpointFormatError` unless ``state_dict`` fills every tensor of the
    timm ``model`` with the right shape and holds nothing else."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs teacher {tuple(expected[k].shape)}'
                  for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = mismatch_parts(missing, unexpected, mismatched, _teacher_hints(model, state_dict),
                                limit=6, shown=3)
        raise CheckpointFormatError('; '.join(['the checkpoint does not fit the teacher'] + parts))


def load_teacher_weights(model: torch.nn.Module, checkpoint, family: str, fmt: str = 'auto',
                         logger='current') -> TeacherCheckpoint:
    """Load a published teacher file (or an already loaded dict) into a timm ``model``,
    strictly; returns the :class:`TeacherCheckpoint` (its summary is also logged)."""
    where = checkpoint if isinstance(checkpoint, str) else '<in-memory checkpoint>'
    source = 'in memory'
    if isinstance(checkpoint, str):
        checkpoint, source = read_teacher_file(checkpoint)
    try:
        found = convert_teacher_state_dict(checkpoint, family, model, fmt, source)
        check_teacher_state_dict(model, found.state_dict)
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f'{where}: {exc}') from None
    model.load_state_dict(found.state_dict, strict=True)
    print_log(f'loaded {family} teacher weights from {osp.basename(where)}: {found.summary()}',
              logger=logger)
    return found
