"""DMT: distil K frozen self-supervised ViT teachers into one student ViT (docs/dmt.md).

Per step, for a batch of images x (one view, the same pixels for everyone):

* every teacher k returns CLS token c_k, last-block patch tokens P_k and the patch tokens of
  the blocks SFD asks for; grids that differ from the student's (another patch size or input
  size) are resized to the student grid; each (teacher, block) and each teacher's CLS token
  has its own target normaliser (``ln`` / ``none`` / ``ema_std`` / ``phis``);
* the student encodes x (or only its visible patches when ``mask_ratio`` > 0, a light
  MAE-style decoder then restores the full grid);
* TFD: per teacher a token head H_k over the student's final sequence,
  ``L_tfd_k = a * l(H_k(z_cls), c_k) + (1 - a) * mean_i l(H_k(z_i), P_k,i)``;
* SFD: per teacher a conv adaptor A_k over the student block maps (channel-concatenated),
  ``L_sfd_k = mean_i l(A_k(S)_i, [T_k^l]_i)`` over all positions and the fused blocks;
* per-sample teacher dropping (optional), then fusion weights w_k (``fixed`` / ``adaptive``
  / ``learned``): ``L = lambda_tfd * sum_k w_k L_tfd_k + lambda_sfd * sum_k w_k L_sfd_k``.

Returned dict: ``loss_tfd_<teacher>`` = lambda_tfd * w_k * L_tfd_k (and ``loss_sfd_...``),
plus ``loss_<strategy>_uncertainty`` for learned weights, so mmengine's sum of every key
containing 'loss' is exactly the total. Log-only entries (``weight_*``, ``raw_*``) do not
contain 'loss'.

Teachers are ``FrozenViTTeacher`` modules: their ViT sits outside the module tree, so it is
never in ``parameters()`` (optimizer, DDP) nor in ``state_dict()`` (checkpoints), and
checkpoints load back strictly; ``init_weights`` loads each teacher from its own file.
"""
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ModuleDict, ModuleList
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..target_norm import build_target_norm

FUSION_MODES = ('fixed', 'adaptive', 'learned')


def resize_tokens(tokens: torch.Tensor, src_grid, dst_grid, mode: str = 'bilinear',
                  antialias: bool = False) -> torch.Tensor:
    """(B, h*w, C) tokens on ``src_grid`` -> (B, H*W, C) on ``dst_grid`` by 2-D interpolation."""
    if tuple(src_grid) == tuple(dst_grid):
        return tokens
    B, N, C = tokens.shape
    if N != src_grid[0] * src_grid[1]:
        raise ValueError(f'{N} tokens do not form the grid {tuple(src_grid)}')
    maps = tokens.transpose(1, 2).reshape(B, C, *src_grid).float()
    kwargs = dict(align_corners=False, antialias=antialias) if mode in ('bilinear', 'bicubic') \
        else {}
    maps = F.interpolate(maps, size=tuple(dst_grid), mode=mode, **kwargs)
    return maps.flatten(2).transpose(1, 2)


@MODELS.register_module()
class DMT(BaseSelfSupervisor):
    """Comprehensive distillation with multiple self-supervised teachers.

    Args:
        backbone: the student (``DMTViT`` config; kept as ``self.backbone`` so checkpoints
            hold it under ``backbone.``).
        teachers: a list of ``FrozenViTTeacher`` configs (K >= 1). Each ``name`` (unique,
            a Python identifier) names its loss terms.
        tfd: token fusion distillation: ``loss_weight`` (lambda_tfd, 1.0), ``cls_weight``
            (a, 0.5), ``head`` (``DMTTokenHead`` config; dims are filled in), ``loss``
            (overrides ``loss`` for TFD). None disables TFD (and builds no heads).
        sfd: spatial feature fusion distillation: ``loss_weight`` (lambda_sfd, 1.0),
            ``teacher_layers`` (block indices of every teacher, default ``[-1]``: the last),
            ``student_layers`` (None: the same depth fractions in the student), ``adaptor``
            (``DMTSpatialAdaptor`` config), ``loss``. None disables SFD.
        loss: the distillation loss l (``SmoothL1DistillLoss`` beta 2.0 by default).
        target_norm: ``'ln'`` (default), ``'none'``, ``'ema_std'``, ``'phis'`` or a config
            dict, for all teachers; or a list with one entry per teacher.
        fusion: ``'fixed'`` (default; weights 1/K or ``dict(mode='fixed', weights=[...])``),
            ``'adaptive'`` (softmax of the detached per-teacher losses / ``temperature``) or
            ``'learned'`` (uncertainty weights: w_k = exp(-s_k) / K plus s_k / K, per
            strategy).
        teacher_drop_prob: per sample, drop each teacher's loss with this probability (at
            least one teacher is kept per sample; kept ones are rescaled by K / kept).
        mask_ratio: fraction of student input patches masked (0: no masking).
        mask_loss_on: ``'all'`` tokens or only the ``'masked'`` ones when masking.
        decoder: the light decoder restoring the full grid when masking
            (``MAEPretrainDecoder``; embed/patch dims are filled in).
        resize_mode / resize_antialias: interpolation of teacher token grids that differ
            from the student's.
        teacher_checkpoints: ``{teacher name: checkpoint path}``; overrides the teachers'
            ``checkpoint`` (the config field users set).
        allow_random_teachers: allow teachers without a checkpoint (tests and toy runs);
            otherwise ``init_weights`` refuses them.
    """

    def __init__(self,
                 backbone: dict,
                 teachers: Union[dict, Sequence[dict]],
                 tfd: Optional[dict] = dict(),
                 sfd: Optional[dict] = dict(),
                 loss: dict = dict(type='SmoothL1DistillLoss', beta=2.0),
                 target_norm: Union[str, dict, Sequence] = 'ln',
                 fusion: Union[str, dict] = 'fixed',
                 teacher_drop_prob: float = 0.0,
                 mask_ratio: float = 0.0,
                 mask_loss_on: str = 'all',
                 decoder: Optional[dict] = dict(type='MAEPretrainDecoder', decoder_embed_dim=256,
                                                decoder_depth=2, decoder_num_heads=8),
                 resize_mode: str = 'bilinear',
                 resize_antialias: bool = False,
                 teacher_checkpoints: Optional[Dict[str, str]] = None,
                 allow_random_teachers: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        backbone = dict(backbone)
        backbone.setdefault('type', 'DMTViT')
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if tfd is None and sfd is None:
            raise ValueError('DMT needs at least one strategy: set `tfd` and/or `sfd` '
                             '(dict() for the defaults)')
        if not 0.0 <= teacher_drop_prob < 1.0:
            raise ValueError(f'teacher_drop_prob must be in [0, 1), got {teacher_drop_prob}')
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        if mask_loss_on not in ('all', 'masked'):
            raise ValueError(f"mask_loss_on must be 'all' or 'masked', got {mask_loss_on!r}")
        self.teacher_drop_prob = float(teacher_drop_prob)
        self.mask_ratio = float(mask_ratio)
        self.mask_loss_on = mask_loss_on
        self.resize_mode = resize_mode
        self.resize_antialias = resize_antialias
        self.allow_random_teachers = allow_random_teachers

        self._build_teachers(teachers, teacher_checkpoints or {}, data_preprocessor)
        K = len(self.teachers)
        s_dims = self.backbone.embed_dims
        self.student_depth = self.backbone.num_layers

        # which teacher blocks each teacher provides; -1 resolves to its last block
        self.tfd_cfg = None if tfd is None else dict(tfd)
        self.sfd_cfg = None if sfd is None else dict(sfd)
        self._sfd_layers = []  # per teacher: (teacher block ids, student block ids)
        if self.sfd_cfg is not None:
            t_spec = list(self.sfd_cfg.get('teacher_layers', [-1]))
            s_spec = self.sfd_cfg.get('student_layers', None)
            if not t_spec:
                raise ValueError('sfd.teacher_layers must name at least one block')
            if s_spec is not None and len(s_spec) != len(t_spec):
                raise ValueError(f'sfd.student_layers ({list(s_spec)}) must pair one-to-one '
                                 f'with sfd.teacher_layers ({t_spec})')
            for teacher in self.teachers:
                depth = teacher.backbone.num_layers
                t_ids = [int(i) % depth for i in t_spec]
                if s_spec is None:  # the same depth fraction in the student
                    s_ids = [max(0, round((t + 1) * self.student_depth / depth) - 1)
                             for t in t_ids]
                else:
                    s_ids = [int(i) % self.student_depth for i in s_spec]
                self._sfd_layers.append((t_ids, s_ids))
        self._teacher_layers = []  # per teacher: every block id whose tokens are targets
        for k, teacher in enumerate(self.teachers):
            last = teacher.backbone.num_layers - 1
            ids = [last] if self.tfd_cfg is not None else []
            if self.sfd_cfg is not None:
                ids += [i for i in self._sfd_layers[k][0] if i not in ids]
            self._teacher_layers.append(ids)
            teacher.out_layers = sorted(i for i in ids if i != last)
        self._student_mid_layers = sorted({
            i for _, s_ids in self._sfd_layers for i in s_ids if i != self.student_depth - 1})

        # target normalisers: one per teacher CLS token and per teacher block
        norms = list(target_norm) if isinstance(target_norm, (list, tuple)) else \
            [target_norm] * K
        if len(norms) != K:
            raise ValueError(f'target_norm lists {len(norms)} entries for {K} teachers')
        self.target_norms = ModuleDict()
        for teacher, spec, ids in zip(self.teachers, norms, self._teacher_layers):
            if self.tfd_cfg is not None:
                self.target_norms[f'{teacher.name}_cls'] = build_target_norm(
                    spec, teacher.embed_dims)
            for i in ids:
                self.target_norms[f'{teacher.name}_{i}'] = build_target_norm(
                    spec, teacher.embed_dims)

        # heads, adaptors, losses
        if self.tfd_cfg is not None:
            self.tfd_weight = float(self.tfd_cfg.get('loss_weight', 1.0))
            self.cls_weight = float(self.tfd_cfg.get('cls_weight', 0.5))
            if not 0.0 <= self.cls_weight <= 1.0:
                raise ValueError(f'tfd.cls_weight must be in [0, 1], got {self.cls_weight}')
            head = dict(self.tfd_cfg.get('head', None) or dict(type='DMTTokenHead'))
            self.tfd_heads = ModuleDict({
                t.name: MODELS.build(dict(head, in_dims=s_dims, out_dims=t.embed_dims))
                for t in self.teachers})
            self.tfd_loss = MODELS.build(self.tfd_cfg.get('loss', None) or loss)
        if self.sfd_cfg is not None:
            self.sfd_weight = float(self.sfd_cfg.get('loss_weight', 1.0))
            adaptor = dict(self.sfd_cfg.get('adaptor', None) or dict(type='DMTSpatialAdaptor'))
            self.sfd_adaptors = ModuleDict({
                t.name: MODELS.build(dict(adaptor, in_channels=s_dims * len(s_ids),
                                          out_channels=t.embed_dims * len(t_ids)))
                for t, (t_ids, s_ids) in zip(self.teachers, self._sfd_layers)})
            self.sfd_loss = MODELS.build(self.sfd_cfg.get('loss', None) or loss)

        self._build_fusion(fusion, K)
        self.decoder = None
        if self.mask_ratio > 0:
            self._build_decoder(decoder, s_dims)

    # ------------------------------------------------------------------ construction
    def _build_teachers(self, teachers, checkpoints, data_preprocessor):
        cfgs = [teachers] if isinstance(teachers, dict) else list(teachers or [])
        if not cfgs:
            raise ValueError('DMT needs at least one teacher config in `teachers`')
        dp = dict(data_preprocessor) if isinstance(data_preprocessor, dict) else {}
        built, names = [], []
        for i, cfg in enumerate(cfgs):
            cfg = dict(cfg)
            cfg.setdefault('type', 'FrozenViTTeacher')
            cfg.setdefault('name', f'teacher{i}')
            name = cfg['name']
            if not str(name).isidentifier() or name in names:
                raise ValueError(f'teacher names must be distinct Python identifiers (they name '
                                 f'loss terms and modules); got {name!r} among {names}')
            names.append(name)
            if name in checkpoints:
                cfg['checkpoint'] = checkpoints[name]
            if dp.get('mean') is not None:
                cfg.setdefault('data_mean', list(dp['mean']))
            if dp.get('std') is not None:
                cfg.setdefault('data_std', list(dp['std']))
            built.append(MODELS.build(cfg))
        self.teachers = ModuleList(built)

    def _build_fusion(self, fusion, K):
        cfg = dict(mode=fusion) if isinstance(fusion, str) else dict(fusion)
        self.fusion_mode = cfg.get('mode', 'fixed')
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f'fusion mode {self.fusion_mode!r} is not one of {FUSION_MODES}')
        weights = cfg.get('weights', None)
        if weights is not None and (self.fusion_mode != 'fixed' or len(weights) != K):
            raise ValueError(f'fusion weights {list(weights)} need mode fixed and one weight per '
                             f'teacher ({K})')
        self.fixed_weights = [1.0 / K] * K if weights is None else [float(w) for w in weights]
        self.register_buffer('fixed_fusion_weights', torch.tensor(self.fixed_weights),
                             persistent=False)  # on the device already: no copy per step
        self.fusion_temperature = float(cfg.get('temperature', 1.0))
        self.fusion_log_vars = None
        if self.fusion_mode == 'learned':
            self.fusion_log_vars = nn.ParameterDict({
                s: nn.Parameter(torch.zeros(K)) for s in self._strategies()})

    def _build_decoder(self, decoder, s_dims):
        if self.backbone.num_extra_tokens != 1:
            raise ValueError('masked distillation needs a student with a CLS token '
                             '(with_cls_token=True) for the MAE-style decoder')
        if decoder is None:
            raise ValueError('mask_ratio > 0 needs a `decoder` config')
        if any(s != [self.student_depth - 1] for _, s in self._sfd_layers) or \
                self._student_mid_layers:
            raise ValueError('with mask_ratio > 0 SFD reads the decoded last-block grid: '
                             'leave sfd.student_layers at the last block ([-1])')
        grid = self.backbone.patch_resolution
        cfg = dict(decoder)
        cfg.update(num_patches=grid[0] * grid[1], embed_dim=s_dims, predict_feature_dim=s_dims)
        self.decoder = MODELS.build(cfg)

    def _strategies(self) -> List[str]:
        return [s for s, c in (('tfd', self.tfd_cfg), ('sfd', self.sfd_cfg)) if c is not None]

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        """Check every teacher checkpoint exists (naming the config field to set), then
        initialise the student / heads and load the teachers."""
        for teacher in self.teachers:
            path = teacher.checkpoint
            field = f'model.teacher_checkpoints.{teacher.name}'
            if path is None and not self.allow_random_teachers:
                raise ValueError(
                    f'teacher {teacher.name!r} has no checkpoint: set the config field {field} '
                    f'(e.g. --cfg-options {field}=PATH) to its pretrained weights (download '
                    'links: docs/teachers.md), or set '
                    'model.allow_random_teachers=True for a random frozen teacher (tests only)')
            if path is not None and not osp.isfile(osp.expanduser(path)):
                raise FileNotFoundError(
                    f'teacher {teacher.name!r}: checkpoint file {path!r} does not exist. '
                    f'Download the official file (links: docs/teachers.md) and set '
                    f'the config field {field} (e.g. --cfg-options {field}=/path/to/file)')
        super().init_weights()

    # ------------------------------------------------------------------ forward parts
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
            if self.decoder.num_patches != N:
                raise ValueError(f'the decoder was built for {self.decoder.num_patches} patches '
                                 f'(student img_size) but the input gives {N}')
            patches = self.decoder(tokens, restore)
        else:
            patches = tokens[:, extra:]
        summary = tokens[:, :1] if extra > 0 else patches.mean(dim=1, keepdim=True)
        layers = {i: t[:, extra:] for i, t in out['layers'].items()}
        layers[self.student_depth - 1] = patches
        return dict(seq=torch.cat([summary, patches], dim=1), layers=layers, grid=grid,
                    mask=mask)

    def teacher_targets(self, x: torch.Tensor, grid) -> List[Dict]:
        """Per teacher: normalised targets {'cls': (B, D_k), block id: (B, N_student, D_k)}."""
        targets = []
        for teacher, ids in zip(self.teachers, self._teacher_layers):
            out = teacher(x)
            last = teacher.backbone.num_layers - 1
            maps = [out['patch'] if i == last else out['layers'][i] for i in ids]
            stacked = torch.cat(maps, dim=-1) if len(maps) > 1 else maps[0]
            stacked = resize_tokens(stacked, out['grid'], grid, self.resize_mode,
                                    self.resize_antialias)
            target = {}
            for i, chunk in zip(ids, stacked.chunk(len(ids), dim=-1)):
                target[i] = self.target_norms[f'{teacher.name}_{i}'](chunk)
            if self.tfd_cfg is not None:
                target['cls'] = self.target_norms[f'{teacher.name}_cls'](out['cls'])
            targets.append(target)
        return targets

    def _teacher_sample_weights(self, B, K, device):
        """(B, K) per-sample teacher weights: kept / dropped teachers, rescaled to sum to K."""
        rand = torch.rand(B, K, device=device)
        keep = rand >= self.teacher_drop_prob
        none_kept = ~keep.any(dim=1, keepdim=True)
        keep = keep | (none_kept & (rand == rand.max(dim=1, keepdim=True).values))
        keep = keep.float()
        return keep * K / keep.sum(dim=1, keepdim=True)

    def _fuse(self, strategy: str, per_teacher: torch.Tensor, lam: float) -> Dict:
        """per_teacher (K,) -> loss entries of one strategy, summing to lam * L_strategy."""
        names = [t.name for t in self.teachers]
        out = {}
        if self.fusion_mode == 'fixed':
            weights = self.fixed_fusion_weights
        elif self.fusion_mode == 'adaptive':
            weights = torch.softmax(per_teacher.detach() / self.fusion_temperature, dim=0)
        else:
            log_vars = self.fusion_log_vars[strategy]
            weights = torch.exp(-log_vars) / len(names)
            out[f'loss_{strategy}_uncertainty'] = lam * log_vars.sum() / len(names)
        terms = lam * weights * per_teacher
        for k, name in enumerate(names):
            out[f'loss_{strategy}_{name}'] = terms[k]
            if self.fusion_mode != 'fixed':
                out[f'weight_{strategy}_{name}'] = weights[k].detach()
                out[f'raw_{strategy}_{name}'] = per_teacher[k].detach()
        return out

    def loss(self, inputs, data_samples=None, **kwargs) -> Dict[str, torch.Tensor]:
        """Distillation losses of one batch (see the module docstring)."""
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        student = self.student_features(x)
        targets = self.teacher_targets(x, student['grid'])
        B, K = x.shape[0], len(self.teachers)
        token_weight = student['mask'] if self.mask_loss_on == 'masked' else None
        sample_weight = None
        if self.teacher_drop_prob > 0 and K > 1:
            sample_weight = self._teacher_sample_weights(B, K, x.device)

        per_strategy = {}
        if self.tfd_cfg is not None:
            a, seq, losses = self.cls_weight, student['seq'], []
            for teacher, target in zip(self.teachers, targets):
                pred = self.tfd_heads[teacher.name](seq)
                last = teacher.backbone.num_layers - 1
                losses.append(
                    a * self.tfd_loss(pred[:, 0], target['cls']) +
                    (1 - a) * self.tfd_loss(pred[:, 1:], target[last], token_weight))
            per_strategy['tfd'] = (torch.stack(losses, dim=1), self.tfd_weight)
        if self.sfd_cfg is not None:
            h, w = student['grid']
            losses = []
            for teacher, target, (t_ids, s_ids) in zip(self.teachers, targets, self._sfd_layers):
                s_in = torch.cat([student['layers'][i] for i in s_ids], dim=-1)
                s_map = s_in.transpose(1, 2).reshape(B, -1, h, w)
                pred = self.sfd_adaptors[teacher.name](s_map).flatten(2).transpose(1, 2)
                n = len(t_ids)
                pred = pred.reshape(B, h * w * n, -1)  # block-major channels -> (N*n, D_k)
                tgt = torch.stack([target[i] for i in t_ids], dim=2).reshape(B, h * w * n, -1)
                weight = None if token_weight is None else \
                    token_weight.repeat_interleave(n, dim=1)
                losses.append(self.sfd_loss(pred, tgt, weight))
            per_strategy['sfd'] = (torch.stack(losses, dim=1), self.sfd_weight)

        out = {}
        for strategy, (per_sample, lam) in per_strategy.items():  # per_sample: (B, K)
            if sample_weight is not None:
                per_sample = per_sample * sample_weight
            out.update(self._fuse(strategy, per_sample.mean(dim=0), lam))
        return out
