"""DMT's targets: K frozen teachers, their token grids resized to the student's, and one
normaliser per (teacher, block) and per teacher CLS token.

It fills mmpretrain's ``target_generator`` slot, as CLIP does for MILAN and the DALL-E /
VQ-KD tokenizers do for BEiT: a frozen network turning the input into what the student
learns to predict. Which blocks each teacher must provide is the distillation head's
business (SFD may read several); the algorithm passes the head's request to
:meth:`MultiTeacherTargetGenerator.request`, which builds the normalisers for exactly those
targets, so the state_dict holds only statistics that are used.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleDict, ModuleList
from mmpretrain.registry import MODELS

from ..target_norm import build_target_norm
from ..teachers.execution import TeacherExecution
from ..utils import build_part

INTERPOLATION_MODES = ('nearest', 'bilinear', 'bicubic', 'area', 'nearest-exact')


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
class MultiTeacherTargetGenerator(BaseModule):
    """Frozen teachers -> normalised targets on the student's token grid.

    Args:
        teachers: teacher configs (K >= 1): ``FrozenViTTeacher`` (MAE / MoCo v3 / iBOT /
            DINO ViTs, the default type) or ``TimmTeacher`` (DINOv2, CLIP, OpenCLIP,
            SigLIP, SAM); each ``name`` (unique, a Python identifier) names the teacher's
            loss terms and statistics. Teachers may differ in width, depth, patch size and
            input size.
        teacher_checkpoints: ``{teacher name: checkpoint path}``, overriding the teachers'
            ``checkpoint``; the config field users set. A name that is not a teacher is an
            error.
        allow_random_teachers: allow teachers without a checkpoint (tests and toy runs);
            otherwise ``init_weights`` refuses them.
        target_norm: one normaliser config for every teacher, or a list with one per teacher:
            ``dict(type='LNTargetNorm')`` or a shorthand ``'ln'`` / ``'none'`` / ``'ema_std'``
            / ``'phis'`` (dmt_mm/models/target_norm).
        resize_mode / resize_antialias: interpolation of teacher grids that differ from the
            student's (``antialias`` only for bilinear / bicubic).
        data_mean / data_std: the data preprocessor's pixel normalisation, passed to every
            teacher so it can re-normalise to its own (filled in by ``DMT``).
        teacher_execution: how the teachers run: ``dict(mode='eager'|'compile'|'cudagraphs',
            fp8=False, freezing=False)`` (``dmt_mm/models/teachers/execution.py``).
    """

    def __init__(self,
                 teachers: Union[dict, Sequence[dict]],
                 teacher_checkpoints: Optional[Dict[str, str]] = None,
                 allow_random_teachers: bool = False,
                 target_norm: Union[str, dict, Sequence] = 'ln',
                 resize_mode: str = 'bilinear',
                 resize_antialias: bool = False,
                 data_mean: Optional[Sequence[float]] = None,
                 data_std: Optional[Sequence[float]] = None,
                 teacher_execution: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if resize_mode not in INTERPOLATION_MODES:
            raise ValueError(f'target_generator.resize_mode {resize_mode!r} is not one of '
                             f'{INTERPOLATION_MODES}')
        if resize_antialias and resize_mode not in ('bilinear', 'bicubic'):
            raise ValueError(f'target_generator.resize_antialias does nothing with resize_mode '
                             f'{resize_mode!r}: use bilinear / bicubic or drop it')
        self.resize_mode = resize_mode
        self.resize_antialias = bool(resize_antialias)
        self.allow_random_teachers = bool(allow_random_teachers)
        self.teachers = ModuleList(self._build_teachers(
            teachers, dict(teacher_checkpoints or {}), data_mean, data_std))
        self.teacher_execution = TeacherExecution.build(teacher_execution)
        self.teacher_execution.apply(self.teachers)
        K = len(self.teachers)
        norms = list(target_norm) if isinstance(target_norm, (list, tuple)) else \
            [target_norm] * K
        if len(norms) != K:
            raise ValueError(f'target_generator.target_norm lists {len(norms)} entries for {K} '
                             'teachers: give one per teacher, or one for all')
        self._norm_specs = norms
        self.target_norms = ModuleDict()
        self._blocks: List[List[int]] = [[] for _ in range(K)]
        self._with_cls = False

    @staticmethod
    def _build_teachers(cfgs, checkpoints, data_mean, data_std):
        cfgs = [cfgs] if isinstance(cfgs, dict) else list(cfgs or [])
        if not cfgs:
            raise ValueError('target_generator.teachers: give at least one teacher config')
        names = [dict(cfg).get('name', f'teacher{i}') for i, cfg in enumerate(cfgs)]
        for name in names:
            if not str(name).isidentifier() or names.count(name) > 1:
                raise ValueError(f'teacher names must be distinct Python identifiers (they name '
                                 f'loss terms and modules); got {names}')
        stray = sorted(set(checkpoints) - set(names))
        if stray:
            raise ValueError(f'target_generator.teacher_checkpoints names {stray}, which '
                             f'{"is" if len(stray) == 1 else "are"} not among the teachers '
                             f'{names}; remove the entry or fix its name')
        built = []
        for i, (cfg, name) in enumerate(zip(cfgs, names)):
            cfg = dict(cfg, name=name)
            if name in checkpoints:
                cfg['checkpoint'] = checkpoints[name]
            if data_mean is not None:
                cfg.setdefault('data_mean', list(data_mean))
            if data_std is not None:
                cfg.setdefault('data_std', list(data_std))
            built.append(build_part(cfg, f'target_generator.teachers[{i}]',
                                    default_type='FrozenViTTeacher'))
        return built

    # ------------------------------------------------------------------ what is produced
    @property
    def names(self) -> List[str]:
        return [t.name for t in self.teachers]

    def teacher_specs(self) -> List[Dict]:
        """What a distillation head needs to size itself: name, width, depth per teacher."""
        return [dict(name=t.name, embed_dims=t.embed_dims, num_layers=t.num_layers)
                for t in self.teachers]

    def request(self, blocks: Sequence[Sequence[int]], cls: bool) -> None:
        """Produce, per teacher, the patch tokens of ``blocks[k]`` (0-based) and, when
        ``cls``, its CLS token; builds one normaliser per requested target."""
        if len(blocks) != len(self.teachers):
            raise ValueError(f'request lists blocks for {len(blocks)} of {len(self.teachers)} '
                             'teachers')
        self._with_cls = bool(cls)
        self.target_norms = ModuleDict()
        for k, (teacher, spec, ids) in enumerate(zip(self.teachers, self._norm_specs, blocks)):
            last = teacher.num_layers - 1
            ids = [int(i) for i in ids]
            if any(not 0 <= i <= last for i in ids):
                raise ValueError(f'teacher {teacher.name!r} has blocks 0..{last}; requested {ids}')
            inner = [i for i in ids if i != last]
            if inner and teacher.block_dims != teacher.embed_dims:
                raise ValueError(
                    f'teacher {teacher.name!r}: its final features are {teacher.embed_dims} '
                    f'wide but its blocks {teacher.block_dims} (e.g. SAM\'s neck), and blocks '
                    f'{inner} are requested besides the last: distil only its last block '
                    "(head.sfd.teacher_layers=[-1]) or set the teacher's final_features='block'")
            self._blocks[k] = ids
            teacher.out_layers = sorted(i for i in ids if i != last)
            where = f'target_generator.target_norm ({teacher.name})'
            norms = ModuleDict()
            if self._with_cls:
                norms['cls'] = build_target_norm(spec, teacher.embed_dims, where)
            for i in ids:
                norms[str(i)] = build_target_norm(spec, teacher.embed_dims, where)
            self.target_norms[teacher.name] = norms

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        """Check every teacher checkpoint exists (naming the config field to set), then
        load the teachers."""
        for teacher in self.teachers:
            path = teacher.checkpoint
            field = f'model.target_generator.teacher_checkpoints.{teacher.name}'
            if path is None and not self.allow_random_teachers:
                raise ValueError(
                    f'teacher {teacher.name!r} has no checkpoint: set the config field {field} '
                    f'(e.g. --cfg-options {field}=PATH) to its pretrained weights (download '
                    'links: docs/teachers.md), or set '
                    'model.target_generator.allow_random_teachers=True for a random frozen '
                    'teacher (tests only)')
            if path is not None and not osp.isfile(osp.expanduser(path)):
                raise FileNotFoundError(
                    f'teacher {teacher.name!r}: checkpoint file {path!r} does not exist. '
                    f'Download the official file (links: docs/teachers.md) and set '
                    f'the config field {field} (e.g. --cfg-options {field}=/path/to/file)')
        super().init_weights()

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, grid, normalize: bool = True) -> List[Dict]:
        """Per teacher: normalised targets ``{'cls': (B, D_k), block id: (B, h*w, D_k)}`` on
        the student grid ``grid`` = (h, w); ``normalize=False``: before normalisation (then
        :meth:`normalize` them, e.g. inside the algorithm's compiled loss region)."""
        targets = []
        for teacher, ids in zip(self.teachers, self._blocks):
            out = teacher(x)
            last = teacher.num_layers - 1
            target = {}
            if ids:
                maps = [out['patch'] if i == last else out['layers'][i] for i in ids]
                stacked = torch.cat(maps, dim=-1) if len(maps) > 1 else maps[0]
                stacked = resize_tokens(stacked, out['grid'], grid, self.resize_mode,
                                        self.resize_antialias)
                target.update(zip(ids, stacked.chunk(len(ids), dim=-1)))
            if self._with_cls:
                target['cls'] = out['cls']
            targets.append(target)
        return self.normalize(targets) if normalize else targets

    def normalize(self, targets: List[Dict]) -> List[Dict]:
        """Apply each (teacher, block) normaliser to :meth:`forward`'s raw targets."""
        return [{key: self.target_norms[name][str(key)](value) for key, value in target.items()}
                for name, target in zip(self.names, targets)]

