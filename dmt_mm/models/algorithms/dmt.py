"""DMT: distil K frozen self-supervised ViT teachers into one student ViT (docs/dmt.md).

Assembled the way mmpretrain assembles MAE, MILAN and BEiT:

* ``backbone``: the student (``DMTViT``);
* ``target_generator``: the frozen teachers and their target normalisers
  (:class:`MultiTeacherTargetGenerator`): images -> normalised targets on the student grid;
* ``head``: TFD token heads, SFD adaptors, losses, teacher dropping and fusion
  (:class:`DMTDistillHead`): student tokens + targets -> loss terms;
* ``neck``: with ``mask_ratio`` > 0, the light MAE-style decoder restoring the full token
  grid from the visible patches (``MAEPretrainDecoder``).

Per step: the student encodes x, the target generator turns x into targets, and the head
returns the loss terms (``loss_tfd_<teacher>``, ``loss_sfd_<teacher>``, ...).

What a replacement part must offer (what ``DMT`` calls):

* target generator: ``teacher_specs()`` (name, embed_dims, num_layers per teacher),
  ``request(blocks, cls)`` and ``forward(x, grid)`` -> per teacher ``{'cls': (B, D),
  block id: (B, h*w, D)}``; with ``compile_tail`` also ``forward(x, grid, normalize=False)``
  and ``normalize(targets)``;
* head: built with ``teachers``, ``student_dims``, ``student_depth``; ``teacher_blocks``
  (per teacher, the blocks it needs), ``needs_cls``, ``student_blocks`` (the student blocks
  it reads) and ``loss(student, targets, token_weight)`` -> loss dict.

Checkpoints written before this layout existed (``tfd_heads.*``, ``sfd_adaptors.*``,
``target_norms.<teacher>_<block>.*``, ``fusion_log_vars.*``, ``decoder.*`` at the top level)
load unchanged: :func:`upgrade_state_dict` renames their keys on load.
"""
import math
import re
from typing import Dict, Optional, Union

import torch
from mmengine.logging import print_log
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..utils import build_part

# keys of the earlier flat DMT signature -> where they live now
MOVED_KEYS = {
    'teachers': 'target_generator.teachers',
    'teacher_checkpoints': 'target_generator.teacher_checkpoints',
    'allow_random_teachers': 'target_generator.allow_random_teachers',
    'target_norm': 'target_generator.target_norm',
    'resize_mode': 'target_generator.resize_mode',
    'resize_antialias': 'target_generator.resize_antialias',
    'tfd': 'head.tfd', 'sfd': 'head.sfd', 'loss': 'head.loss', 'fusion': 'head.fusion',
    'teacher_drop_prob': 'head.teacher_drop_prob', 'decoder': 'neck',
}

# state_dict prefixes of the earlier flat layout -> the current one
LEGACY_PREFIXES = (('tfd_heads.', 'head.tfd_heads.'), ('sfd_adaptors.', 'head.sfd_adaptors.'),
                   ('fusion_log_vars.', 'head.fusion_log_vars.'), ('decoder.', 'neck.'),
                   ('teachers.', 'target_generator.teachers.'))
_LEGACY_NORM = re.compile(r'target_norms\.([A-Za-z_]\w*)_(cls|\d+)\.(.+)')


def upgrade_state_dict(state_dict: Dict, prefix: str = '') -> int:
    """Rename, in place, the keys of a flat-layout DMT state_dict under ``prefix`` to the
    current layout; returns how many keys were renamed (0 for current checkpoints)."""
    renamed = 0
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        new = None
        for old, cur in LEGACY_PREFIXES:
            if rest.startswith(old):
                new = cur + rest[len(old):]
                break
        match = _LEGACY_NORM.fullmatch(rest)
        if match:
            new = 'target_generator.target_norms.{}.{}.{}'.format(*match.groups())
        if new is not None:
            state_dict[prefix + new] = state_dict.pop(key)
            renamed += 1
    return renamed


@MODELS.register_module()
class DMT(BaseSelfSupervisor):
    """Comprehensive distillation with multiple self-supervised teachers.

    Args:
        backbone: the student (``DMTViT`` config; kept as ``self.backbone`` so checkpoints
            hold it under ``backbone.``).
        target_generator: ``MultiTeacherTargetGenerator`` config (teachers, their
            checkpoints, target norms, grid resizing); ``data_mean`` / ``data_std`` are
            filled in from the data preprocessor.
        head: ``DMTDistillHead`` config (tfd, sfd, loss, fusion, teacher_drop_prob);
            ``teachers``, ``student_dims`` and ``student_depth`` are filled in.
        neck: the decoder restoring the full grid when masking (``MAEPretrainDecoder``;
            ``num_patches``, ``embed_dim`` and ``predict_feature_dim`` are filled in).
            Only with ``mask_ratio`` > 0.
        mask_ratio: fraction of student input patches masked (0: no masking).
        mask_loss_on: ``'all'`` tokens or only the ``'masked'`` ones when masking.
        compile_tail: run target normalisation, heads and losses of every teacher as one
            ``torch.compile`` region (True, or a dict of ``torch.compile`` arguments): the
            memory-bound tail of the step fused into few kernels. When the whole train step
            is compiled (the configs' ``compile`` option) the tail is in that graph already.
    """

    def __init__(self,
                 backbone: dict,
                 target_generator: Optional[dict] = None,
                 head: dict = dict(type='DMTDistillHead'),
                 neck: Optional[dict] = None,
                 mask_ratio: float = 0.0,
                 mask_loss_on: str = 'all',
                 compile_tail: Union[bool, dict] = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **unknown):
        if unknown:
            self._refuse(unknown)
        if target_generator is None:
            raise ValueError('DMT needs target_generator=dict(type=\'MultiTeacherTargetGenerator\''
                             ', teachers=[...]) (config layout: docs/dmt.md)')
        backbone = dict(backbone)
        backbone.setdefault('type', 'DMTViT')
        dp = dict(data_preprocessor) if isinstance(data_preprocessor, dict) else {}
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        if mask_loss_on not in ('all', 'masked'):
            raise ValueError(f"mask_loss_on must be 'all' or 'masked', got {mask_loss_on!r}")
        if mask_loss_on == 'masked' and mask_ratio == 0:
            raise ValueError("mask_loss_on='masked' does nothing without masking: set "
                             'mask_ratio > 0 or leave mask_loss_on at \'all\'')
        self.mask_ratio = float(mask_ratio)
        self.mask_loss_on = mask_loss_on
        self.compile_tail = dict(dynamic=False) if compile_tail is True else \
            (dict(compile_tail) if compile_tail else None)
        self._compiled_tail = None
        self.student_depth = self.backbone.num_layers

        # registered in the order of the flat layout (parameters: student, heads, decoder),
        # so optimizer states saved by it resume onto the same parameters
        filled = {k: dp[k] for k in ('mean', 'std') if dp.get(k) is not None}
        self.target_generator = build_part(
            target_generator, 'target_generator',
            filled={f'data_{k}': list(v) for k, v in filled.items()},
            default_type='MultiTeacherTargetGenerator')
        self.head = build_part(head, 'head', default_type='DMTDistillHead', filled=dict(
            teachers=self.target_generator.teacher_specs(),
            student_dims=self.backbone.embed_dims, student_depth=self.student_depth))
        self.target_generator.request(self.head.teacher_blocks, cls=self.head.needs_cls)
        self._student_mid_layers = [i for i in self.head.student_blocks
                                    if i != self.student_depth - 1]
        self.neck = self._build_neck(neck)

    @staticmethod
    def _refuse(unknown):
        lines = []
        for key in unknown:
            if key in MOVED_KEYS:
                lines.append(f'`{key}` moved to `model.{MOVED_KEYS[key]}`')
            else:
                lines.append(f'unknown key `{key}`')
        raise ValueError('DMT: ' + '; '.join(lines) + '. Valid keys: backbone, target_generator, '
                         'head, neck, mask_ratio, mask_loss_on, compile_tail, data_preprocessor, '
                         'init_cfg '
                         '(config layout: docs/dmt.md)')

    def _build_neck(self, neck):
        if self.mask_ratio == 0:
            if neck is not None:
                raise ValueError('neck (the masking decoder) does nothing with mask_ratio=0: '
                                 'remove it or set mask_ratio > 0')
            return None
        if neck is None:
            raise ValueError('mask_ratio > 0 needs a `neck` restoring the full grid, e.g. '
                             "neck=dict(type='MAEPretrainDecoder', decoder_embed_dim=256, "
                             'decoder_depth=2, decoder_num_heads=8)')
        if self.backbone.num_extra_tokens != 1:
            raise ValueError('masked distillation needs a student with a CLS token '
                             '(with_cls_token=True) for the MAE-style decoder')
        if self.head.student_blocks != [self.student_depth - 1]:
            raise ValueError('with mask_ratio > 0 SFD reads the decoded last-block grid: '
                             'leave head.sfd.student_layers at the last block ([-1])')
        grid = self.backbone.patch_resolution
        dims = self.backbone.embed_dims
        return build_part(neck, 'neck', filled=dict(
            num_patches=grid[0] * grid[1], embed_dim=dims, predict_feature_dim=dims))

    # ------------------------------------------------------------------ checkpoints
    # for runner-side checks that compare a checkpoint's keys with the model's before it
    # is loaded: they can bring a flat-layout state_dict up to date first
    upgrade_state_dict = staticmethod(upgrade_state_dict)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        renamed = upgrade_state_dict(state_dict, prefix)
        if renamed:
            print_log(f'DMT: renamed {renamed} keys of a checkpoint in the flat layout '
                      '(tfd_heads., target_norms., ...) to head. / target_generator. / neck.',
                      logger='current')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ student
    def _student_grid(self, x):
        patch = self.backbone.patch_embed.projection.kernel_size
        return (math.ceil(x.shape[-2] / patch[0]), math.ceil(x.shape[-1] / patch[1]))

    def _random_masking(self, B, N, device):
        """MAE-style random masking: keep indices, binary mask (1 = masked), restore ids."""
        len_keep = max(1, int(N * (1 - self.mask_ratio)))
        ids_shuffle = torch.argsort(torch.rand(B, N, device=device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, N, device=device)
        mask[:, :len_keep] = 0
        return ids_shuffle[:, :len_keep], torch.gather(mask, 1, ids_restore), ids_restore

    def student_features(self, x: torch.Tensor) -> Dict:
        """Student outputs: ``seq`` (B, 1+N, D_s: summary + patch tokens of the final grid),
        ``layers`` {block id: (B, N, D_s)}, ``grid``, ``mask`` (B, N) or None."""
        grid = self._student_grid(x)
        N = grid[0] * grid[1]
        keep = mask = restore = None
        if self.mask_ratio > 0:
            keep, mask, restore = self._random_masking(x.shape[0], N, x.device)
        out = self.backbone.forward_tokens(x, layers=self._student_mid_layers, keep_index=keep)
        if tuple(out['grid']) != grid:
            raise RuntimeError(f'student grid {out["grid"]} differs from expected {grid}')
        extra, tokens = out['num_extra_tokens'], out['tokens']
        if keep is not None:
            if self.neck.num_patches != N:
                raise ValueError(f'the decoder was built for {self.neck.num_patches} patches '
                                 f'(student img_size) but the input gives {N}')
            patches = self.neck(tokens, restore)
        else:
            patches = tokens[:, extra:]
        summary = tokens[:, :1] if extra > 0 else patches.mean(dim=1, keepdim=True)
        layers = {i: t[:, extra:] for i, t in out['layers'].items()}
        layers[self.student_depth - 1] = patches
        return dict(seq=torch.cat([summary, patches], dim=1), layers=layers, grid=grid,
                    mask=mask)

    # ------------------------------------------------------------------ loss
    def loss(self, inputs, data_samples=None, **kwargs) -> Dict[str, torch.Tensor]:
        """Distillation losses of one batch: student features, teacher targets, head."""
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        student = self.student_features(x)
        token_weight = student['mask'] if self.mask_loss_on == 'masked' else None
        if self.compile_tail is None:
            targets = self.target_generator(x, student['grid'])
            return self.head.loss(student, targets, token_weight)
        raw = self.target_generator(x, student['grid'], normalize=False)
        if self._compiled_tail is None:
            self._compiled_tail = torch.compile(self.distill_tail, **self.compile_tail)
        return self._compiled_tail(student, raw, token_weight)

    def distill_tail(self, student: Dict, raw_targets, token_weight=None):
        """Target normalisation + heads + losses of every teacher (``compile_tail``'s
        region): the same loss terms as normalising in the target generator."""
        return self.head.loss(student, self.target_generator.normalize(raw_targets),
                              token_weight)
