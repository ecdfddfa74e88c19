"""DMT's distillation head: student tokens + teacher targets -> per-teacher loss terms.

It fills mmpretrain's ``head`` slot (``DMT.loss`` calls ``self.head.loss(...)``, as MAE and
MILAN do) and holds every trained part besides the student:

* TFD: per teacher a token head H_k over the student's final sequence,
  ``L_tfd_k = a * l(H_k(z_cls), c_k) + (1 - a) * mean_i l(H_k(z_i), P_k,i)``;
* SFD: per teacher a conv adaptor A_k over the student block maps (channel-concatenated),
  ``L_sfd_k = mean_i l(A_k(S)_i, [T_k^l]_i)`` over all positions and the fused blocks;
* per-sample teacher dropping (optional), then fusion weights w_k (``fixed`` / ``adaptive``
  / ``learned``): ``L = lambda_tfd * sum_k w_k L_tfd_k + lambda_sfd * sum_k w_k L_sfd_k``.

``loss`` returns ``loss_tfd_<teacher>`` = lambda_tfd * w_k * L_tfd_k (and ``loss_sfd_...``),
plus ``loss_<strategy>_uncertainty`` for learned weights, so mmengine's sum of every key
containing 'loss' is exactly the total. Log-only entries (``weight_*``, ``raw_*``) do not
contain 'loss'.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule, ModuleDict
from mmpretrain.registry import MODELS

from ..utils import build_part, check_keys

FUSION_MODES = ('fixed', 'adaptive', 'learned')
TFD_KEYS = ('loss_weight', 'cls_weight', 'token_head', 'loss')
SFD_KEYS = ('loss_weight', 'teacher_layers', 'student_layers', 'adaptor', 'loss')
FUSION_KEYS = {'fixed': ('mode', 'weights'), 'adaptive': ('mode', 'temperature'),
               'learned': ('mode',)}


@MODELS.register_module()
class DMTDistillHead(BaseModule):
    """TFD token heads, SFD adaptors, their losses, teacher dropping and fusion.

    Args:
        teachers: per teacher ``dict(name, embed_dims, num_layers)`` (filled in by ``DMT``
            from the target generator).
        student_dims / student_depth: the student's width and number of blocks (filled in).
        tfd: token fusion distillation: ``loss_weight`` (lambda_tfd, 1.0), ``cls_weight``
            (a, 0.5), ``token_head`` (``DMTTokenHead`` config; widths are filled in), ``loss``
            (overrides ``loss`` for TFD). None disables TFD (and builds no heads).
        sfd: spatial feature fusion distillation: ``loss_weight`` (lambda_sfd, 1.0),
            ``teacher_layers`` (block indices of every teacher, default ``[-1]``: the last),
            ``student_layers`` (None: the same depth fractions in the student), ``adaptor``
            (``DMTSpatialAdaptor`` config), ``loss``. None disables SFD.
        loss: the distillation loss l (``SmoothL1DistillLoss`` beta 2.0 by default).
        fusion: ``'fixed'`` (weights 1/K, or ``dict(mode='fixed', weights=[...])``),
            ``'adaptive'`` (softmax of the detached per-teacher losses, ``dict(mode=
            'adaptive', temperature=1.0)``) or ``'learned'`` (uncertainty weights:
            w_k = exp(-s_k) / K plus s_k / K, per strategy).
        teacher_drop_prob: per sample, drop each teacher's loss with this probability (at
            least one teacher is kept per sample; kept ones are rescaled by K / kept).
    """

    def __init__(self,
                 teachers: Sequence[dict],
                 student_dims: int,
                 student_depth: int,
                 tfd: Optional[dict] = dict(),
                 sfd: Optional[dict] = dict(),
                 loss: dict = dict(type='SmoothL1DistillLoss', beta=2.0),
                 fusion: Union[str, dict] = 'fixed',
                 teacher_drop_prob: float = 0.0,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if tfd is None and sfd is None:
            raise ValueError('head: DMT needs at least one strategy: set `tfd` and/or `sfd` '
                             '(dict() for the defaults)')
        self.names = [t['name'] for t in teachers]
        K = len(self.names)
        if not 0.0 <= teacher_drop_prob < 1.0:
            raise ValueError(f'head.teacher_drop_prob must be in [0, 1), got {teacher_drop_prob}')
        if teacher_drop_prob > 0 and K == 1:
            raise ValueError('head.teacher_drop_prob does nothing with a single teacher: set it '
                             'to 0')
        self.teacher_drop_prob = float(teacher_drop_prob)
        self.student_depth = int(student_depth)
        self.tfd_cfg = None if tfd is None else dict(tfd)
        self.sfd_cfg = None if sfd is None else dict(sfd)
        if self.tfd_cfg is not None:
            check_keys(self.tfd_cfg, TFD_KEYS, 'head.tfd')
            self.tfd_weight = float(self.tfd_cfg.get('loss_weight', 1.0))
            self.cls_weight = float(self.tfd_cfg.get('cls_weight', 0.5))
            if not 0.0 <= self.cls_weight <= 1.0:
                raise ValueError(f'head.tfd.cls_weight must be in [0, 1], got {self.cls_weight}')
            token_head = self.tfd_cfg.get('token_head') or dict(type='DMTTokenHead')
            self.tfd_heads = ModuleDict({
                t['name']: build_part(token_head, 'head.tfd.token_head', dict(
                    in_dims=student_dims, out_dims=t['embed_dims'])) for t in teachers})
            self.tfd_loss = build_part(self.tfd_cfg.get('loss') or loss, 'head.tfd.loss')
        self.sfd_layers = []  # per teacher: (teacher block ids, student block ids)
        if self.sfd_cfg is not None:
            check_keys(self.sfd_cfg, SFD_KEYS, 'head.sfd')
            self.sfd_weight = float(self.sfd_cfg.get('loss_weight', 1.0))
            self.sfd_layers = [self._pair_layers(t['num_layers']) for t in teachers]
            adaptor = self.sfd_cfg.get('adaptor') or dict(type='DMTSpatialAdaptor')
            self.sfd_adaptors = ModuleDict({
                t['name']: build_part(adaptor, 'head.sfd.adaptor', dict(
                    in_channels=student_dims * len(s_ids),
                    out_channels=t['embed_dims'] * len(t_ids)))
                for t, (t_ids, s_ids) in zip(teachers, self.sfd_layers)})
            self.sfd_loss = build_part(self.sfd_cfg.get('loss') or loss, 'head.sfd.loss')
        # the target blocks each teacher must provide (its last block for TFD first)
        self.teacher_blocks = []
        for k, t in enumerate(teachers):
            ids = [t['num_layers'] - 1] if self.tfd_cfg is not None else []
            if self.sfd_cfg is not None:
                ids += [i for i in self.sfd_layers[k][0] if i not in ids]
            self.teacher_blocks.append(ids)
        self._build_fusion(fusion, K)

    def _pair_layers(self, teacher_depth):
        t_spec = list(self.sfd_cfg.get('teacher_layers', [-1]))
        s_spec = self.sfd_cfg.get('student_layers', None)
        if not t_spec:
            raise ValueError('head.sfd.teacher_layers must name at least one block')
        if s_spec is not None and len(s_spec) != len(t_spec):
            raise ValueError(f'head.sfd.student_layers ({list(s_spec)}) must pair one-to-one '
                             f'with head.sfd.teacher_layers ({t_spec})')
        t_ids = [int(i) % teacher_depth for i in t_spec]
        if s_spec is None:  # the same depth fraction in the student
            s_ids = [max(0, round((t + 1) * self.student_depth / teacher_depth) - 1)
                     for t in t_ids]
        else:
            s_ids = [int(i) % self.student_depth for i in s_spec]
        return t_ids, s_ids

    def _build_fusion(self, fusion, K):
        cfg = dict(mode=fusion) if isinstance(fusion, str) else dict(fusion)
        self.fusion_mode = cfg.get('mode', 'fixed')
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f'head.fusion mode {self.fusion_mode!r} is not one of {FUSION_MODES}')
        for key in cfg:
            owner = next((m for m, keys in FUSION_KEYS.items() if key in keys), None)
            if key not in FUSION_KEYS[self.fusion_mode] and owner is not None:
                raise ValueError(f'head.fusion: `{key}` does nothing with mode '
                                 f'{self.fusion_mode!r} (it is an option of mode {owner!r}); '
                                 'remove it')
        check_keys(cfg, FUSION_KEYS[self.fusion_mode], 'head.fusion')
        weights = cfg.get('weights', None)
        if weights is not None and len(weights) != K:
            raise ValueError(f'head.fusion weights {list(weights)}: give one weight per teacher '
                             f'({K})')
        fixed = [1.0 / K] * K if weights is None else [float(w) for w in weights]
        self.register_buffer('fixed_fusion_weights', torch.tensor(fixed),
                             persistent=False)  # on the device already: no copy per step
        self.fusion_temperature = float(cfg.get('temperature', 1.0))
        if self.fusion_temperature <= 0:
            raise ValueError(f'head.fusion temperature must be > 0, got {self.fusion_temperature}')
        self.fusion_log_vars = None
        if self.fusion_mode == 'learned':
            self.fusion_log_vars = nn.ParameterDict({
                s: nn.Parameter(torch.zeros(K)) for s in self.strategies})

    @property
    def strategies(self) -> List[str]:
        return [s for s, c in (('tfd', self.tfd_cfg), ('sfd', self.sfd_cfg)) if c is not None]

    @property
    def needs_cls(self) -> bool:
        """Whether the teachers' CLS tokens are targets (TFD)."""
        return self.tfd_cfg is not None

    @property
    def student_blocks(self) -> List[int]:
        """Every student block whose tokens the head reads (the last one included)."""
        ids = {self.student_depth - 1} if self.tfd_cfg is not None else set()
        for _, s_ids in self.sfd_layers:
            ids.update(s_ids)
        return sorted(ids)

    # ------------------------------------------------------------------ loss
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
        out = {}
        K = len(self.names)
        if self.fusion_mode == 'fixed':
            weights = self.fixed_fusion_weights
        elif self.fusion_mode == 'adaptive':
            weights = torch.softmax(per_teacher.detach() / self.fusion_temperature, dim=0)
        else:
            log_vars = self.fusion_log_vars[strategy]
            weights = torch.exp(-log_vars) / K
            out[f'loss_{strategy}_uncertainty'] = lam * log_vars.sum() / K
        terms = lam * weights * per_teacher
        for k, name in enumerate(self.names):
            out[f'loss_{strategy}_{name}'] = terms[k]
            if self.fusion_mode != 'fixed':
                out[f'weight_{strategy}_{name}'] = weights[k].detach()
                out[f'raw_{strategy}_{name}'] = per_teacher[k].detach()
        return out

    def tfd_losses(self, seq, targets, token_weight=None) -> torch.Tensor:
        """(B, K) per-sample TFD losses of the student sequence ``seq`` (B, 1+N, D_s)."""
        a, losses = self.cls_weight, []
        for name, target, blocks in zip(self.names, targets, self.teacher_blocks):
            pred = self.tfd_heads[name](seq)
            losses.append(a * self.tfd_loss(pred[:, 0], target['cls']) +
                          (1 - a) * self.tfd_loss(pred[:, 1:], target[blocks[0]], token_weight))
        return torch.stack(losses, dim=1)

    def sfd_losses(self, layers, grid, targets, token_weight=None) -> torch.Tensor:
        """(B, K) per-sample SFD losses from the student block tokens ``layers``
        {block id: (B, N, D_s)} on ``grid``; each distinct student map is built once."""
        h, w = grid
        maps, losses = {}, []
        for name, target, (t_ids, s_ids) in zip(self.names, targets, self.sfd_layers):
            key = tuple(s_ids)
            if key not in maps:
                s_in = torch.cat([layers[i] for i in s_ids], dim=-1)
                maps[key] = s_in.transpose(1, 2).reshape(s_in.shape[0], -1, h, w)
            B, n = maps[key].shape[0], len(t_ids)
            pred = self.sfd_adaptors[name](maps[key]).flatten(2).transpose(1, 2)
            pred = pred.reshape(B, h * w * n, -1)  # block-major channels -> (N*n, D_k)
            tgt = torch.stack([target[i] for i in t_ids], dim=2).reshape(B, h * w * n, -1)
            weight = None if token_weight is None else token_weight.repeat_interleave(n, dim=1)
            losses.append(self.sfd_loss(pred, tgt, weight))
        return torch.stack(losses, dim=1)

    def loss(self, student: Dict, targets: List[Dict],
             token_weight: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Loss entries of one batch.

        Args:
            student: ``seq`` (B, 1+N, D_s: summary + patch tokens), ``layers`` {block id:
                (B, N, D_s)} for :attr:`student_blocks`, ``grid`` (h, w).
            targets: per teacher, the target generator's ``{'cls': ..., block id: ...}``.
            token_weight: (B, N) weights of the patch positions (masked-token losses).
        """
        K = len(self.names)
        sample_weight = None
        if self.teacher_drop_prob > 0:
            B = student['seq'].shape[0]
            sample_weight = self._teacher_sample_weights(B, K, student['seq'].device)
        per_strategy = {}
        if self.tfd_cfg is not None:
            per_strategy['tfd'] = (self.tfd_losses(student['seq'], targets, token_weight),
                                   self.tfd_weight)
        if self.sfd_cfg is not None:
            per_strategy['sfd'] = (self.sfd_losses(student['layers'], student['grid'], targets,
                                                   token_weight), self.sfd_weight)
        out = {}
        for strategy, (per_sample, lam) in per_strategy.items():  # per_sample: (B, K)
            if sample_weight is not None:
                per_sample = per_sample * sample_weight
            out.update(self._fuse(strategy, per_sample.mean(dim=0), lam))
        return out
