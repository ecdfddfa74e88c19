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

The second half of the module holds the layouts of the teachers that load as timm models
(``TimmTeacher``): DINOv2 hub files, OpenAI's CLIP TorchScript archives, OpenCLIP / SigLIP
state dicts (``.bin`` or ``.safetensors``) and SAM checkpoints. :func:`load_teacher_weights`
reads the file (:func:`read_teacher_file`), recognises its layout
(:func:`identify_teacher_layout`), refuses files of another family or without an image
tower in one line, resizes DINOv2's position table the authors' way
(:func:`dinov2_resize_pos_embed`), converts with timm's own ``checkpoint_filter_fn`` and
loads strictly.
"""
import os.path as osp
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log

from dmt_mm.errors import UserError

from .io import atomic_write
from .loading import safe_torch_load

FORMATS = ('auto', 'mae', 'mocov3', 'ibot', 'dino', 'mmpretrain')

# timm-style name (the four official layouts) -> mmpretrain VisionTransformer name.
_TIMM_RULES = [(re.compile(p), r) for p, r in [
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


class CheckpointFormatError(UserError, ValueError):
    """The checkpoint does not hold a complete ViT encoder of the expected shape."""


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


def summarise_keys(keys, limit: int = 12) -> str:
    """'layers.11.* (12), head.* (4)' -- group keys up to their first block index."""
    groups = defaultdict(int)
    for key in keys:
        parts = key.split('.')
        head = []
        for part in parts[:-1]:
            head.append(part)
            if part.isdigit() or len(head) == 3:
                break
        groups['.'.join(head) + '.*' if head else key] += 1
    items = [f'{g} ({n})' if n > 1 else g for g, n in groups.items()]
    more = f', ... ({len(items) - limit} more groups)' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


def _first_keys(mapping, n=8):
    keys = list(mapping)
    return keys[:n] + (['...'] if len(keys) > n else [])


def _unwrap(obj: Mapping, checkpoint_key: Optional[str]) -> Tuple[Mapping, str]:
    """The state dict inside the published container, and where it was."""
    if checkpoint_key is not None:
        if checkpoint_key not in obj or not isinstance(obj[checkpoint_key], Mapping):
            raise CheckpointFormatError(
                f'checkpoint_key={checkpoint_key!r} is not a state dict in this checkpoint; '
                f'its top-level keys are {_first_keys(obj)}')
        return obj[checkpoint_key], f'[{checkpoint_key!r}]'
    for key in _CONTAINERS:
        if isinstance(obj.get(key), Mapping):
            return obj[key], f'[{key!r}]'
    return obj, 'the top level'


def _find_prefix(state_dict: Mapping, prefixes, names: str) -> Optional[str]:
    anchor = _ANCHOR[names]
    return next((p for p in prefixes if p + anchor in state_dict), None)


_RESNET_KEY = re.compile(r'(^|\.)layer[1-4]\.\d+\.(conv|bn)[1-3]\.weight$')


def _not_a_vit(state_dict: Mapping, container: str) -> Optional[str]:
    """Why ``state_dict`` cannot be a ViT checkpoint, when its keys say what it is."""
    resnet = next((k for k in state_dict if _RESNET_KEY.search(k)), None)
    if resnet is not None:
        return (f'this is a ResNet checkpoint (e.g. {resnet!r} in {container}), a ViT is '
                'needed: DMT teachers and students are Vision Transformers. Take the ViT '
                'file of the same method (MoCo v3: vit-b-300ep.pth.tar, not r-50-*.pth.tar)')
    return None


def _refuse_other_family(state_dict: Mapping) -> None:
    """A DINOv2 / CLIP / SigLIP / SAM file given to the plain-ViT loader: say which
    teacher type loads it."""
    layout, evidence = identify_teacher_layout(state_dict)
    if layout not in (None, 'timm'):
        raise CheckpointFormatError(
            f'this is a {LAYOUT_NAMES[layout]} checkpoint (key {evidence!r}), not a plain '
            f"ViT: load it with type='TimmTeacher', {_LAYOUT_FAMILIES[layout]} "
            '(docs/teachers.md); FrozenViTTeacher takes MAE, MoCo v3, iBOT and DINO files')


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
    raise CheckpointFormatError(_not_a_vit(state_dict, container) or (
        f'unknown checkpoint layout: no ViT encoder (a "patch_embed.proj.weight" or '
        f'"patch_embed.projection.weight" key, possibly under a prefix) in {container}; its '
        f'first keys are {_first_keys(state_dict)}. Supported: official MAE, MoCo v3, iBOT '
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
    _refuse_other_family(_strip_module(state_dict))
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
        raise CheckpointFormatError(_not_a_vit(state_dict, container) or
            f'this is not a {fmt} checkpoint as published: no {wanted} in {container} (first '
            f'keys: {_first_keys(state_dict)}). Check the file, or use format "auto".')

    converted, ignored, unknown = OrderedDict(), [], []
    for key, value in state_dict.items():
        if not key.startswith(prefix) or not isinstance(value, torch.Tensor):
            ignored.append(key)
            continue
        name = key[len(prefix):]
        if names == 'mmpretrain':
            new_name = name
        else:
            new_name = next((rule.sub(repl, name) for rule, repl in _TIMM_RULES
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
        parts = _mismatch_parts(missing, unexpected, mismatched, _hints(vit, state_dict),
                                what='backbone keys')
        raise CheckpointFormatError('\n  '.join(['the checkpoint does not fit the ViT:'] + parts))
    return state_dict, dropped


def _mismatch_parts(missing, unexpected, mismatched, hints, what='keys', limit=12,
                    shown=6) -> List[str]:
    """The pieces of a 'does not fit' message: missing, unexpected and mismatched keys, then
    the likely causes."""
    parts = []
    if missing:
        parts.append(f'missing {len(missing)} {what}: {summarise_keys(missing, limit)}')
    if unexpected:
        parts.append(f'unexpected {len(unexpected)} keys: {summarise_keys(unexpected, limit)}')
    if mismatched:
        parts.append(f'{len(mismatched)} shape mismatches: ' + '; '.join(mismatched[:shown]))
    return parts + ['likely cause: ' + h for h in hints]


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


# ==============================================================================================
# Teachers of other families: DINOv2, OpenAI CLIP / OpenCLIP / SigLIP image towers, SAM.
#
# These load into timm models (``TimmTeacher``). The renaming is timm's own: each timm model
# file's ``checkpoint_filter_fn`` converts the authors' published layout; what is added here
# is finding the layout, refusing files of another family or of no image tower in one line,
# DINOv2's own resizing of its position table, and a strict, explained load.
# ==============================================================================================
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


def _strip_module(state_dict: Mapping) -> Mapping:
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
    state_dict = {k: v for k, v in _strip_module(state_dict).items()}
    layout, evidence = identify_teacher_layout(state_dict)
    if layout is None:
        raise CheckpointFormatError(_not_a_vit(state_dict, 'the file') or (
            f'unknown teacher checkpoint layout (first keys: {_first_keys(state_dict)}); '
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
        parts = _mismatch_parts(missing, unexpected, mismatched, _teacher_hints(model, state_dict),
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
