"""mmpretrain-layout ViT weights -> the checkpoint files the MAE / MoCo v3 / DINO / iBOT
authors publish: the inverse of :mod:`dmt_mm.checkpoint.vit_layouts`.

Why: the miniature study (``tools/run_pipeline.py``) pretrains its tiny teachers with
mmpretrain's own algorithms and then saves each one *exactly* as the real teacher file is
laid out, so the DMT stage loads it through the same path a user's downloaded file takes
(``FrozenViTTeacher(checkpoint=..., checkpoint_format='auto')``). The key renaming is not a
second table: it is derived by inverting the converter's rules, so the two cannot drift.

=========  ===================================================================================
format     file written (as the authors publish it)
=========  ===================================================================================
mae        ``{'model': encoder}`` (+ the decoder, MAE names, with ``decoder=``)
mocov3     ``{'epoch', 'arch', 'state_dict': {module.base_encoder.*, module.momentum_encoder.*,
           module.predictor.*}}`` (projectors as ``<encoder>.head.*``)
dino       backbone only: the plain encoder dict; training (``full``): ``{'teacher':
           {backbone.*, head.*}, 'student': {module.backbone.*, module.head.*}, 'epoch',
           'args'}``
ibot       backbone only: ``{'state_dict': encoder}``; training: as DINO, the student with
           ``module.backbone.masked_embed``
=========  ===================================================================================

Heads keep their mmpretrain sub-names under the official head prefix: the loader ignores
heads by prefix, and no tool reads them back.
"""
import argparse
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

from dmt_mm.errors import UserError

from .io import atomic_write
from .vit_layouts import TIMM_RULES

OFFICIAL_FORMATS = ('mae', 'mocov3', 'dino', 'ibot')


class ExportError(UserError, ValueError):
    """The weights cannot be written in the requested official layout."""


def _invert_rule(rule: 're.Pattern', repl: str):
    """(pattern, replacement) of a simple renaming rule ``^lit(grp)lit...$ -> lit\\1lit``
    turned around: a regex over the replacement side and a template over the pattern side."""
    src = rule.pattern
    if not (src.startswith('^') and src.endswith('$')):
        raise ExportError(f'cannot invert the converter rule {src!r}: not anchored')
    body = src[1:-1]
    groups = re.findall(r'\(([^()]*)\)', body)
    # the source side as a template: group k -> \g<k>, escaped literals unescaped
    pieces = re.split(r'\([^()]*\)', body)
    template = ''
    for k, piece in enumerate(pieces):
        template += re.sub(r'\\(.)', r'\1', piece)
        if k < len(groups):
            template += f'\\g<{k + 1}>'
    # the target side as a regex: \k -> the k-th group of the source pattern
    pattern, last = '', 0
    for m in re.finditer(r'\\(\d)', repl):
        pattern += re.escape(repl[last:m.start()]) + f'({groups[int(m.group(1)) - 1]})'
        last = m.end()
    pattern += re.escape(repl[last:])
    order = [int(m) for m in re.findall(r'\\(\d)', repl)]
    if sorted(order) != list(range(1, len(groups) + 1)):
        raise ExportError(f'cannot invert the converter rule {src!r} -> {repl!r}: it does not '
                          'use each group exactly once')
    # the regex groups follow the replacement's order; the template numbers the source's
    remap = {k: i + 1 for i, k in enumerate(order)}
    template = re.sub(r'\\g<(\d+)>', lambda m: f'\\g<{remap[int(m.group(1))]}>', template)
    return re.compile(f'^{pattern}$'), template


_INVERSE_RULES = [_invert_rule(rule, repl) for rule, repl in TIMM_RULES]


def to_official_names(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """An mmpretrain ``VisionTransformer`` state dict (no prefix) with the official
    (timm-style) names of the MAE / MoCo v3 / DINO / iBOT repositories."""
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        name = next((rule.sub(template, key) for rule, template in _INVERSE_RULES
                     if rule.match(key)), None)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        raise ExportError(f'{len(unknown)} tensors have no official ViT name: {unknown[:8]}; '
                          'only plain ViT encoders (mmpretrain VisionTransformer / DMTViT '
                          'keys, without a prefix) can be exported')
    return out


def mae_decoder_to_official(decoder: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """mmpretrain ``MAEPretrainDecoder`` keys -> the MAE repository's decoder names."""
    out = OrderedDict()
    for key, value in decoder.items():
        if key.startswith('decoder_blocks.'):
            index, rest = key[len('decoder_blocks.'):].split('.', 1)
            name = next(iter(to_official_names({f'layers.{index}.{rest}': value})))
            out['decoder_' + name] = value
        elif key.startswith('ln1.'):
            out['decoder_norm.' + key[len('ln1.'):]] = value
        elif key.startswith(('decoder_', 'mask_token')):
            out[key] = value
        else:
            raise ExportError(f'unknown MAE decoder tensor {key!r}')
    return out


def _prefixed(prefix: str, state_dict: Mapping) -> 'OrderedDict':
    return OrderedDict((prefix + k, v) for k, v in state_dict.items())


def official_checkpoint(fmt: str, encoder: Mapping[str, torch.Tensor], *,
                        full: bool = True,
                        momentum_encoder: Optional[Mapping] = None,
                        student: Optional[Mapping] = None,
                        heads: Optional[Dict[str, Mapping]] = None,
                        decoder: Optional[Mapping] = None,
                        epoch: int = 0, arch: str = 'vit_base') -> Dict:
    """The object the authors' ``torch.save`` wrote, for an mmpretrain-named encoder.

    Args:
        fmt: one of :data:`OFFICIAL_FORMATS`.
        encoder: the network users evaluate: MAE's encoder, MoCo v3's base encoder, the
            DINO / iBOT teacher (mmpretrain ViT keys, no prefix).
        full: DINO / iBOT: the training checkpoint (teacher + student + heads) rather than
            the backbone-only release.
        momentum_encoder: MoCo v3's momentum encoder (default: a copy of ``encoder``).
        student: DINO / iBOT student encoder (default: a copy of ``encoder``).
        heads: extra head tensors by role: ``projector``, ``momentum_projector``,
            ``predictor`` (MoCo v3), ``teacher_head``, ``student_head`` (DINO / iBOT).
        decoder: MAE only: the ``MAEPretrainDecoder`` tensors (written as MAE names).
    """
    if fmt not in OFFICIAL_FORMATS:
        raise ExportError(f'unknown official format {fmt!r}; choose one of {OFFICIAL_FORMATS}')
    heads = dict(heads or {})
    enc = to_official_names(encoder)
    if fmt == 'mae':
        model = OrderedDict(enc)
        if decoder is not None:
            model.update(mae_decoder_to_official(decoder))
        return {'model': model}
    if fmt == 'mocov3':
        momentum = to_official_names(momentum_encoder) if momentum_encoder is not None \
            else OrderedDict((k, v.clone()) for k, v in enc.items())
        sd = _prefixed('module.base_encoder.', enc)
        sd.update(_prefixed('module.base_encoder.head.', heads.get('projector', {})))
        sd.update(_prefixed('module.momentum_encoder.', momentum))
        sd.update(_prefixed('module.momentum_encoder.head.',
                            heads.get('momentum_projector', heads.get('projector', {}))))
        sd.update(_prefixed('module.predictor.', heads.get('predictor', {})))
        return {'epoch': epoch, 'arch': arch, 'state_dict': sd}
    # dino / ibot
    if not full:
        return {'state_dict': enc} if fmt == 'ibot' else enc
    stud = to_official_names(student) if student is not None \
        else OrderedDict((k, v.clone()) for k, v in enc.items())
    if fmt == 'ibot':
        stud['masked_embed'] = torch.zeros(stud['cls_token'].shape[-1])
    teacher = _prefixed('backbone.', enc)
    teacher.update(_prefixed('head.', heads.get('teacher_head', {})))
    student_sd = _prefixed('module.backbone.', stud)
    student_sd.update(_prefixed('module.head.', heads.get('student_head', {})))
    return {'student': student_sd, 'teacher': teacher, 'epoch': epoch,
            'args': argparse.Namespace(arch=arch, epochs=epoch)}


def _strip(state_dict: Mapping, prefix: str) -> 'OrderedDict':
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


# mmpretrain algorithm (Runner checkpoint) -> where each official role lives in its state dict
ALGORITHM_LAYOUTS = {
    # MAE: encoder = backbone, decoder = neck
    'MAE': dict(encoder='backbone.', decoder='neck.'),
    # MoCo v3: base encoder + projector, momentum encoder = CosineEMA(Sequential(bb, neck))
    'MoCoV3': dict(encoder='backbone.', momentum_encoder='momentum_encoder.module.0.',
                   projector='neck.', momentum_projector='momentum_encoder.module.1.',
                   predictor='head.predictor.'),
    # BYOL, the DINO-style self-distillation stand-in: the EMA target network is the teacher
    # (as in DINO, whose released backbone is the EMA teacher), the online network the student
    'BYOL': dict(encoder='target_net.module.0.', student='backbone.',
                 teacher_head='target_net.module.1.', student_head='neck.'),
}


def export_algorithm_checkpoint(state_dict: Mapping[str, torch.Tensor], algorithm: str,
                                fmt: str, full: bool = True, epoch: int = 0,
                                arch: str = 'vit_base') -> Dict:
    """An mmpretrain self-supervised Runner checkpoint's ``state_dict`` -> official file."""
    if algorithm not in ALGORITHM_LAYOUTS:
        raise ExportError(f'no export layout for algorithm {algorithm!r}; known: '
                          f'{sorted(ALGORITHM_LAYOUTS)}')
    roles = {role: _strip(state_dict, prefix)
             for role, prefix in ALGORITHM_LAYOUTS[algorithm].items()}
    empty = [f'{role} ({ALGORITHM_LAYOUTS[algorithm][role]}*)' for role, sd in roles.items()
             if not sd]
    if empty:
        raise ExportError(f'the {algorithm} checkpoint has no tensors for: {", ".join(empty)}; '
                          f'is it a Runner checkpoint of mmpretrain {algorithm}?')
    head_roles = ('projector', 'momentum_projector', 'predictor', 'teacher_head',
                  'student_head')
    # CosineEMA keeps a step counter beside the module: not a weight of any network
    return official_checkpoint(
        fmt, roles['encoder'], full=full,
        momentum_encoder=roles.get('momentum_encoder'), student=roles.get('student'),
        heads={r: roles[r] for r in head_roles if r in roles}, decoder=roles.get('decoder'),
        epoch=epoch, arch=arch)


def save_official(obj: Dict, path: str) -> str:
    """``torch.save`` atomically and *unsigned*, like a downloaded file: loading it goes
    through the weights-only path, as the real teachers do."""
    return atomic_write(path, lambda f: torch.save(obj, f))
