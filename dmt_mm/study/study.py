"""The DMT study in miniature: which stages run, with which configs and arguments.

data (the factorised toy world, version 2) -> three teachers (MAE, MoCo v3, BYOL; each
exported to its official file layout) -> DMT -> extract the student -> transfer to
detection / segmentation / classification, and the frozen-feature probes (k-NN, linear,
dense linear) -> results (table with paired statistics, figure, loss curves, PCA picture).
``--with-baselines`` adds single-teacher DMT, TFD only, SFD only and a from-scratch student;
``--seeds N`` repeats DMT, transfer and probes with seeds 0..N-1 (the teachers play the part
of downloaded checkpoints: trained once).

``--controlled`` runs the controlled multi-teacher experiment instead: three teachers trained
with different, known objectives (per-patch category; colour x texture; size x depth
order), DMT from all three and from each alone, and dense linear probes of every factor.

Every stage runs the project's own tools as subprocesses (``tools/train.py``,
``tools/test.py``, ``tools/model_converters/extract_student.py``) on the configs in
``configs/toy/pipeline/``; the commands are in each stage's ``stage.log``, so any stage
can be rerun by hand. Where the tools and configs are is the caller's to say
(``StudyOptions.tools_dir`` / ``configs_dir``; ``tools/run_pipeline.py`` passes its
checkout's), so the package never guesses a source tree from its own location.
"""
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dmt_mm.datasets.toy_world import FACTORS, STUDY_WORLD, ToyWorldSpec

from .runner import Stage, StageRunner, command

# the three toy teachers: config, mmpretrain algorithm, official layout and file name
TEACHERS = [
    dict(name='mae', label='MAE', paradigm='masked image modelling', algorithm='MAE',
         fmt='mae', config='mae_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py',
         file='mae_pretrain_vit_toy.pth'),
    dict(name='mocov3', label='MoCo v3', paradigm='contrastive', algorithm='MoCoV3',
         fmt='mocov3', config='mocov3_vit-toyteacher-p8_1xb32-coslr-300it_toyworld.py',
         file='mocov3_vit-toy-p8.pth.tar'),
    dict(name='byol', label='BYOL', algorithm='BYOL', fmt='dino',
         paradigm='EMA self-distillation (stands in for iBOT/DINO)',
         config='byol_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py',
         file='byol_vittoy16_pretrain_full_checkpoint.pth'),
]
TEACHER_NAMES = [t['name'] for t in TEACHERS]

# the controlled experiment's teachers: each learns one known factor map per patch
_CONTROLLED_TEACHER = ('controlled/linear-teacher_vit-toyteacher-p16_1xb16-300it_toyworld-64x64-'
                       '{}.py')
CONTROLLED_TEACHERS = [
    dict(name=name, label=name, knows=knows, config=_CONTROLLED_TEACHER.format(name),
         file=f'{name}_teacher_vit-toy-p16.pth')
    for name, knows in (('category', 'the object category (shape)'),
                        ('appearance', 'colour x texture'),
                        ('geometry', 'size x depth order'))]
CONTROLLED_FACTORS = ('category', 'colour', 'texture', 'size', 'depth')

# pretraining methods: table label, DMT config (None: no pretraining), teachers used
SCRATCH = dict(label='random init (no pretraining)', config=None, teachers=[])
METHODS = {
    'dmt': dict(label='DMT (TFD + SFD)',
                config='dmt_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                teachers=TEACHER_NAMES),
    'dmt_mae': dict(label='DMT, one teacher (MAE)',
                    config='dmt_vit-toy-p16_mae_1xb32-300it_toyworld.py', teachers=['mae']),
    'dmt_mocov3': dict(label='DMT, one teacher (MoCo v3)',
                       config='dmt_vit-toy-p16_mocov3_1xb32-300it_toyworld.py',
                       teachers=['mocov3']),
    'dmt_byol': dict(label='DMT, one teacher (BYOL)',
                     config='dmt_vit-toy-p16_byol_1xb32-300it_toyworld.py', teachers=['byol']),
    'dmt_tfd': dict(label='DMT, TFD only',
                    config='dmt-tfd_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                    teachers=TEACHER_NAMES),
    'dmt_sfd': dict(label='DMT, SFD only',
                    config='dmt-sfd_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py',
                    teachers=TEACHER_NAMES),
    'scratch': SCRATCH,
}
BASELINES = ['dmt_mae', 'dmt_mocov3', 'dmt_byol', 'dmt_tfd', 'dmt_sfd', 'scratch']
CONTROLLED_METHODS = OrderedDict([('dmt', dict(
    label='DMT (TFD + SFD)', teachers=[t['name'] for t in CONTROLLED_TEACHERS],
    config='controlled/dmt_vit-toy-p16_category-appearance-geometry_1xb32-300it_toyworld.py'))])
for _t in CONTROLLED_TEACHERS:
    CONTROLLED_METHODS[f'dmt_{_t["name"]}'] = dict(
        label=f'DMT, one teacher ({_t["name"]})', teachers=[_t['name']],
        config=f'controlled/dmt_vit-toy-p16_{_t["name"]}_1xb32-300it_toyworld.py')
CONTROLLED_METHODS['scratch'] = SCRATCH

# transfer tasks and frozen-feature probes: config, how its length is set (None: nothing
# trains), its tool, and its title
TASKS = {
    'det': dict(config='cascade-mask-rcnn_dmt-vit-toy-simplefpn_1xb4-160it_toyworld.py',
                by='iters', title='toy detection (Cascade Mask R-CNN, COCO AP)'),
    'seg': dict(config='upernet_dmt-vit-toy-f2p_1xb4-160it_toyworld-128x128.py',
                by='iters', title='toy segmentation (UperNet, mIoU)'),
    'cls': dict(config='dmt-vit-toy-p16_1xb16-coslr-3e_toyworld-cls.py', by='epochs',
                title='toy classification (fine-tuning, top-1)'),
    'knn': dict(config='knn_dmt-vit-toy-p16_k20-t0.07_toyworld-cls.py', by=None,
                title='k-NN probe (k = 20, T = 0.07, top-1)'),
    'linear': dict(config='linear_dmt-vit-toy-p16_1xb32-lars-5e_toyworld-cls.py',
                   by='epochs', title='linear probe (top-1)'),
    'seg_linear': dict(config='linear_dmt-vit-toy-p16_1xb8-200it_toyworld-128x128.py',
                       by='iters', title='dense linear probe (mIoU)'),
}
TRANSFER = {k: TASKS[k] for k in ('det', 'seg', 'cls')}
PROBES = {k: TASKS[k] for k in ('knn', 'linear', 'seg_linear')}

# lengths of every stage: 'default' equals the numbers in the configs' names
PROFILES = {
    'default': dict(teacher_iters=300, dmt_iters=300, det_iters=160, seg_iters=160,
                    cls_epochs=3, linear_epochs=5, seg_linear_iters=200, pca_size=224,
                    log_interval=None),
    'quick': dict(teacher_iters=4, dmt_iters=4, det_iters=2, seg_iters=2, cls_epochs=1,
                  linear_epochs=1, seg_linear_iters=2, pca_size=64, log_interval=1),
}
# the toy world of each profile; quick: a few images of every kind, enough for k = 20
WORLDS = {'default': STUDY_WORLD,
          'quick': ToyWorldSpec(version=2, num_train=24, num_val=6, max_objects=5,
                                cls_per_class_train=6, cls_per_class_val=3)}
STUDENT_FILE = 'student_vit-toy-p16.pth'
TABLE_NOTES = (
    'Toy world, CPU: a miniature of the paper\'s tables (ImageNet top-1 -> toy classification '
    'fine-tuning top-1; COCO Cascade Mask R-CNN AP -> toy detection AP; ADE20K UperNet mIoU '
    '-> toy segmentation mIoU) and of the frozen-feature probes (k-NN and linear top-1 on the '
    'single-object split, dense linear mIoU on the scenes). The numbers show that every stage '
    'works end to end; they are not evidence about DMT at scale.',
    'Teachers: MAE (masked image modelling), MoCo v3 (contrastive) and BYOL (EMA '
    'self-distillation; it stands in for iBOT / DINO, which mmpretrain 1.2 does not ship), '
    'pretrained with mmpretrain on the toy world\'s unlabeled images, saved in the official '
    'MAE / MoCo v3 / DINO file layouts and loaded with checkpoint_format=\'auto\'.',
    'pretrain time: the student\'s distillation (mmengine\'s mean iteration time x '
    'iterations, start-up and evaluation excluded), one process, CPU. random init: none.',
)
CONTROLLED_NOTES = (
    'Controlled experiment, toy world: three teachers trained with known objectives (per '
    'patch: category; colour x texture ("appearance"); size x depth order ("geometry")), '
    'DMT of the toy student from all three and from each alone; every column is a dense '
    'linear probe (frozen student, BatchNorm + 1x1 conv, mIoU) of one factor of the scenes.',
    'Expected if TFD + SFD transfer what each teacher knows: DMT close to each specialist on '
    'that specialist\'s factors, and each single-teacher student clearly below DMT on the '
    'factors its teacher lacks. Teacher rows: the same probe of the teachers themselves.',
)


def config_digest(path: str, _seen=None) -> str:
    """Hash of a config file and every local ``_base_`` it inherits (recursively); package
    bases (``mmdet::...``) count by the package's version. Part of each stage's signature,
    so editing a config redoes the stages that use it."""
    import hashlib
    import re
    from importlib.metadata import version
    seen = set() if _seen is None else _seen
    path = osp.abspath(path)
    if path in seen:
        return ''
    seen.add(path)
    with open(path, 'rb') as f:
        text = f.read()
    parts = [hashlib.sha256(text).hexdigest()]
    match = re.search(rb'^_base_\s*=\s*(\[.*?\]|[\'"][^\'"]*[\'"])', text, re.M | re.S)
    for base in re.findall(rb'[\'"]([^\'"]+)[\'"]', match.group(1)) if match else []:
        base = base.decode()
        if '::' in base:
            package = base.split('::')[0]  # scope -> distribution (no import: cheap)
            package = {'mmseg': 'mmsegmentation'}.get(package, package)
            parts.append(f'{base}@{version(package)}')
        else:
            parts.append(config_digest(osp.join(osp.dirname(path), base), seen))
    return hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]


def _student_heads(config: str) -> int:
    from mmengine.config import Config
    return int(Config.fromfile(config).model.backbone.arch['num_heads'])


@dataclass
class StudyOptions:
    """What to run (see tools/run_pipeline.py for the command-line flags), and where:
    ``tools_dir`` holds train.py / test.py / model_converters / analysis_tools,
    ``configs_dir`` the study's configs (a checkout's ``configs/toy/pipeline``)."""
    tools_dir: str = ''
    configs_dir: str = ''
    work_dir: str = 'work_dirs/pipeline'
    profile: str = 'default'
    with_baselines: bool = False
    controlled: bool = False
    seeds: int = 1
    methods: Optional[List[str]] = None      # explicit method list (default: dmt [+ baselines])
    overrides: Dict = field(default_factory=dict)  # profile entries to change
    images: Optional[List[str]] = None       # PCA picture photos (default: bundled ones)

    def check_paths(self) -> None:
        for label, folder, needed in (('tools_dir', self.tools_dir, 'train.py'),
                                      ('configs_dir', self.configs_dir,
                                       METHODS['dmt']['config'])):
            if not folder or not osp.isfile(osp.join(folder, needed)):
                raise ValueError(f'{label}={folder!r} does not hold {needed}: pass the '
                                 f'folder of a dmt_mm checkout (tools/run_pipeline.py does)')

    def lengths(self) -> Dict:
        if self.profile not in PROFILES:
            raise ValueError(f'unknown profile {self.profile!r}; choose one of '
                             f'{sorted(PROFILES)}')
        lengths = dict(PROFILES[self.profile])
        unknown = set(self.overrides) - set(lengths)
        if unknown:
            raise ValueError(f'unknown length overrides {sorted(unknown)}; known: '
                             f'{sorted(lengths)}')
        for key, value in self.overrides.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'--set {key}={value}: lengths are positive integers '
                                 f'(e.g. --set {key}={PROFILES["default"][key] or 10})')
        lengths.update(self.overrides)
        return lengths

    def method_table(self) -> Dict:
        return CONTROLLED_METHODS if self.controlled else METHODS

    def method_keys(self) -> List[str]:
        table = self.method_table()
        if self.methods:
            keys = list(self.methods)
        elif self.controlled:
            keys = list(CONTROLLED_METHODS)
        else:
            keys = ['dmt'] + (BASELINES if self.with_baselines else [])
        unknown = [k for k in keys if k not in table]
        if unknown:
            raise ValueError(f'unknown methods {unknown}; choose from {list(table)}')
        if self.seeds < 1:
            raise ValueError(f'--seeds must be at least 1, got {self.seeds}')
        return keys


def _suffix(seed: int) -> str:
    return '' if seed == 0 else f'_s{seed}'


def _log_options(lengths: Dict) -> List[str]:
    return [] if lengths['log_interval'] is None else \
        [f'default_hooks.logger.interval={lengths["log_interval"]}']


def _factor_options(task: str, factor: Optional[str]) -> List[str]:
    """--cfg-options that make a probe config read one factor's labels."""
    if factor is None:
        return []
    n = len(FACTORS[factor])
    if task == 'knn':
        return [f'model.prototype.dataset.factor={factor}',
                f'test_dataloader.dataset.factor={factor}', f'model.num_classes={n}',
                f'model.data_preprocessor.num_classes={n}']
    if task == 'linear':
        return [f'{loader}.dataset.factor={factor}' for loader in
                ('train_dataloader', 'val_dataloader')] + \
            [f'model.head.num_classes={n}', f'data_preprocessor.num_classes={n}']
    return [f'{loader}.dataset.factor={factor}' for loader in
            ('train_dataloader', 'val_dataloader')] + [f'model.decode_head.num_classes={n}']


def write_random_student(config: str, seed: int, path: str) -> None:
    """The student of a DMT config, randomly initialised under ``seed`` (the random-init
    row of probes that need a checkpoint file: tools/test.py)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import dmt_mm.models  # noqa: F401  (registers DMTViT)
    from dmt_mm.checkpoint.backbone import save_backbone_checkpoint
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(Config.fromfile(config).model.backbone)
    backbone.init_weights()
    save_backbone_checkpoint(backbone.state_dict(), path, meta=dict(seed=seed, init='random'))


class Study:
    """Builds the stage list and the run manifest of one study under ``work_dir``."""

    def __init__(self, options: StudyOptions):
        options.check_paths()
        self.opts = options
        self.tools = osp.abspath(options.tools_dir)
        self.configs = osp.abspath(options.configs_dir)
        self.root = osp.abspath(options.work_dir)
        self.lengths = options.lengths()
        self.methods = options.method_keys()
        self.table = options.method_table()
        self.controlled = options.controlled
        self.teachers = CONTROLLED_TEACHERS if options.controlled else TEACHERS
        self.world = WORLDS[options.profile]
        self.seeds = list(range(options.seeds))
        self.runs = []  # results.Run entries, filled while planning

    def path(self, *parts) -> str:
        return osp.join(self.root, *parts)

    def config(self, name: str) -> str:
        return osp.join(self.configs, name)

    def tool(self, *parts) -> str:
        return osp.join(self.tools, *parts)

    def _train(self, config: str, work_dir: str, options: List[str]) -> List[str]:
        argv = [self.tool('train.py'), config, '--work-dir', work_dir]
        return argv + (['--cfg-options'] + options if options else [])

    def tasks(self) -> List[str]:
        """Transfer tasks and probes of every method: the main study's, or one dense
        linear probe per factor (controlled)."""
        if self.controlled:
            return [f'seg_linear/{factor}' for factor in CONTROLLED_FACTORS]
        return list(TASKS)

    # ------------------------------------------------------------------ stages
    def stages(self) -> List[Stage]:
        from .results import Run
        self.runs = []
        stages = [self._data_stage()]
        needed = {t for m in self.methods for t in self.table[m]['teachers']}
        if self.controlled:  # the teachers' own probes are rows of the table
            needed = {t['name'] for t in self.teachers}
        teachers = [t for t in self.teachers if t['name'] in needed]
        stages += [self._teacher_stage(t) for t in teachers]
        names = {t['name']: t['label'] for t in self.teachers}
        for seed in self.seeds:
            for key in self.methods:
                method = self.table[key]
                info = dict(teachers=' + '.join(names[t] for t in method['teachers']) or '-')
                student = None
                if method['config'] is not None:
                    pre, ext = self._pretrain_stages(key, seed)
                    stages += [pre, ext]
                    student = self.path(ext.name, STUDENT_FILE)
                    self.runs.append(Run(method['label'], 'pretrain', self.path(pre.name),
                                         seed, info))
                for task in self.tasks():
                    stage = self._task_stage(task, key, seed, student)
                    stages.append(stage)
                    self.runs.append(Run(method['label'], task, self.path(stage.name), seed,
                                         info))
            if self.controlled:
                for teacher in teachers:
                    label = f'{teacher["label"]} teacher (knows {teacher["knows"]})'
                    for task in self.tasks():
                        stage = self._task_stage(task, f'teacher-{teacher["name"]}', seed,
                                                 teacher=teacher)
                        stages.append(stage)
                        self.runs.append(Run(label, task, self.path(stage.name), seed,
                                             dict(teachers='(itself)')))
        stages.append(self._results_stage([s.name for s in stages]))
        return stages

    def _data_stage(self) -> Stage:
        world = self.world

        def generate(stage_dir):
            from dmt_mm.datasets import generate_toy_world
            generate_toy_world(osp.join(stage_dir, 'toy_world'), world)
        import hashlib

        import dmt_mm.datasets.toy_world as generator
        with open(generator.__file__, 'rb') as f:  # a changed generator redoes the world
            code = hashlib.sha256(f.read()).hexdigest()[:16]
        return Stage('data', 'generating the toy world (COCO json, ADE-style maps, image '
                     'folders, labels per factor)',
                     [command(func=generate, label='generate_toy_world')],
                     outputs=['toy_world/DONE'], spec=dict(spec=repr(world), generator=code))

    def _teacher_stage(self, teacher: Dict) -> Stage:
        name = f'teacher_{teacher["name"]}'
        work_dir = self.path(name)
        iters = self.lengths['teacher_iters']
        options = [f'train_cfg.max_iters={iters}'] + _log_options(self.lengths)
        if self.controlled:  # validated once at the end: how well it knows its factor
            options.append(f'train_cfg.val_interval={iters}')
        train = self._train(self.config(teacher['config']), work_dir, options)

        def export(stage_dir, teacher=teacher, iters=iters):
            from dmt_mm.checkpoint.backbone import save_backbone_checkpoint, validate_backbone
            from dmt_mm.checkpoint.export import export_algorithm_checkpoint, save_official
            from dmt_mm.checkpoint.loading import safe_torch_load
            ckpt = safe_torch_load(osp.join(stage_dir, f'iter_{iters}.pth'))
            if 'fmt' not in teacher:  # a controlled teacher: its ViT in mmpretrain layout
                vit = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
                       if k.startswith('backbone.')}
                validate_backbone(vit)
                save_backbone_checkpoint(vit, osp.join(stage_dir, teacher['file']),
                                         meta=dict(trained_on=teacher['knows']))
                return
            obj = export_algorithm_checkpoint(ckpt['state_dict'], teacher['algorithm'],
                                              teacher['fmt'], epoch=iters, arch='vit_toy')
            save_official(obj, osp.join(stage_dir, teacher['file']))

        fmt = teacher.get('fmt', 'mmpretrain')
        what = teacher.get('paradigm') or f'learns {teacher["knows"]} per patch'
        return Stage(name, f'pretraining the {teacher["label"]} teacher ({what}, {iters} '
                     f'iters), saved in the {fmt} layout',
                     [command(train, label='train'), command(func=export, label=f'export_{fmt}')],
                     deps=['data'], outputs=[teacher['file']],
                     spec=dict(export=fmt, file=teacher['file'],
                               config=config_digest(self.config(teacher['config']))))

    def _pretrain_stages(self, key: str, seed: int):
        method = self.table[key]
        name = f'{key}{_suffix(seed)}'
        work_dir = self.path(name)
        iters = self.lengths['dmt_iters']
        options = [f'model.target_generator.teacher_checkpoints.{t["name"]}=' +
                   self.path(f'teacher_{t["name"]}', t['file'])
                   for t in self.teachers if t['name'] in method['teachers']]
        options += [f'train_cfg.max_iters={iters}', f'randomness.seed={seed}']
        train = self._train(self.config(method['config']), work_dir,
                            options + _log_options(self.lengths))
        pre = Stage(name, f'{method["label"]}: distilling {len(method["teachers"])} '
                    f'teacher(s) into the toy student ({iters} iters, seed {seed})',
                    [command(train, label='train')],
                    deps=['data'] + [f'teacher_{t}' for t in method['teachers']],
                    outputs=[f'iter_{iters}.pth'],
                    spec=dict(config=config_digest(self.config(method['config']))))
        ext_name = f'extract_{name}'
        extract = [self.tool('model_converters', 'extract_student.py'),
                   osp.join(work_dir, f'iter_{iters}.pth'), self.path(ext_name, STUDENT_FILE)]
        ext = Stage(ext_name, f'extracting the student of {name}',
                    [command(extract, label='extract_student')], deps=[name],
                    outputs=[STUDENT_FILE])
        return pre, ext

    def _task_stage(self, task: str, key: str, seed: int, student: Optional[str] = None,
                    teacher: Optional[Dict] = None) -> Stage:
        """One transfer task or probe of one method (or of a controlled teacher) and seed:
        trained by tools/train.py and evaluated once at its end, or, for k-NN, evaluated
        by tools/test.py. The random-init row trains from the config's own init."""
        from .results import split_task
        base, factor = split_task(task)
        spec = TASKS[base]
        name = f'{base}{"-" + factor if factor else ""}_{key}{_suffix(seed)}'
        work_dir = self.path(name)
        config = self.config(spec['config'])
        options, deps, commands = [], ['data'], []
        if teacher is not None:
            student = self.path(f'teacher_{teacher["name"]}', teacher['file'])
            deps.append(f'teacher_{teacher["name"]}')
            options += self._teacher_arch_options(base)
        elif student is not None:
            deps.append(osp.basename(osp.dirname(student)))
        if spec['by'] is None:  # k-NN: tools/test.py with the student as the checkpoint
            if student is None:
                student = osp.join(work_dir, 'random_' + STUDENT_FILE)
                commands.append(command(func=lambda d, s=seed, p=student: write_random_student(
                    self.config(self.table['dmt']['config']), s, p), label='random_student'))
            options += [f'model.feature_cache={osp.join(work_dir, "knn_train_features.pth")}']
            options += _factor_options(base, factor)
            commands.append(command([self.tool('test.py'), config, student, '--work-dir',
                                     work_dir, '--cfg-options'] + options, label='test'))
            outputs, length = ['test_metrics.json'], 'no training'
        else:
            n = self.lengths[f'{base}_{spec["by"]}']
            options += [f'train_cfg.max_{spec["by"]}={n}', f'train_cfg.val_interval={n}']
            if student is None:
                options.append('model.backbone.init_cfg=None')
            else:
                options.append(f'model.backbone.init_cfg.checkpoint={student}')
            options += [f'randomness.seed={seed}'] + _factor_options(base, factor)
            commands.append(command(self._train(config, work_dir,
                                                options + _log_options(self.lengths)),
                                    label='train'))
            outputs = [f'{"iter" if spec["by"] == "iters" else "epoch"}_{n}.pth']
            length = f'{n} {spec["by"]}'
        of = f'the {teacher["label"]} teacher' if teacher else self.table[key]['label']
        title = spec['title'] + (f', {factor}' if factor else '')
        return Stage(name, f'{title} of {of} ({length}, seed {seed})', commands, deps=deps,
                     outputs=outputs, spec=dict(config=config_digest(config)))

    def _teacher_arch_options(self, task: str) -> List[str]:
        """--cfg-options that give a probe config the toy teacher's architecture."""
        from mmengine.config import Config
        arch = Config.fromfile(self.config(osp.join('_base_', 'toy_ssl_data.py'))
                               ).toy_teacher_arch
        options = [f'model.backbone.arch.{k}={v}' for k, v in arch.items()]
        width = arch['embed_dims']
        if task == 'seg_linear':
            options += [f'model.decode_head.in_channels={width}',
                        f'model.decode_head.channels={width}']
        elif task == 'linear':
            options += [f'model.neck.input_features={width}', f'model.head.in_channels={width}']
        return options

    def _results_stage(self, deps: List[str]) -> Stage:
        from .results import Run, write_manifest
        out_dir = self.path('results')
        runs = [Run(f'{t["label"]} teacher', 'teacher', self.path(f'teacher_{t["name"]}'), 0)
                for t in self.teachers if f'teacher_{t["name"]}' in deps] + list(self.runs)
        manifest = osp.join(out_dir, 'runs.json')

        def write_runs(stage_dir, runs=runs):
            write_manifest(runs, manifest)

        title = 'DMT in miniature: ' + ('the controlled multi-teacher experiment'
                                        if self.controlled else 'transfer of the toy student')
        collect = [self.tool('analysis_tools', 'collect_results.py'), '--manifest',
                   manifest, '--out-dir', out_dir, '--plots', '--title', title,
                   '--reference', self.table['dmt']['label'], '--note',
                   *(CONTROLLED_NOTES if self.controlled else TABLE_NOTES)]
        commands = [command(func=write_runs, label='write_manifest'),
                    command(collect, label='collect_results')]
        outputs = ['results.md', 'results.csv', 'results.json', 'results_figure.png',
                   'loss_pretraining.png', 'loss_transfer.png']
        if not self.controlled:
            commands.append(command(self._pca_command(out_dir, deps), label='visualize_features'))
            outputs.append('pca_features.png')
        return Stage('results', 'results table, figure, loss curves' +
                     ('' if self.controlled else ' and the feature PCA picture'), commands,
                     deps=deps, outputs=outputs,
                     spec=dict(runs=[(r.method, r.task, r.work_dir, r.seed) for r in runs]))

    def _pca_command(self, out_dir: str, deps: List[str]) -> List[str]:
        """visualize_features.py over every teacher file and the students of seed 0."""
        from mmengine.config import Config
        teacher_heads = Config.fromfile(self.config(osp.join(
            '_base_', 'toy_ssl_data.py'))).toy_teacher_arch.num_heads
        argv = [self.tool('analysis_tools', 'visualize_features.py'), '--out',
                osp.join(out_dir, 'pca_features.png'), '--size', str(self.lengths['pca_size'])]
        heads = []
        for t in self.teachers:
            if f'teacher_{t["name"]}' in deps:
                label = f'{t["label"]} teacher'
                argv += ['--model', label, self.path(f'teacher_{t["name"]}', t['file'])]
                heads.append(f'{label}={teacher_heads}')
        student_cfg = None
        for key in self.methods:
            config = self.table[key]['config']
            name = f'extract_{key}{_suffix(self.seeds[0])}'
            if config is None or name not in deps:
                continue
            student_cfg = student_cfg or self.config(config)
            label = f'student: {self.table[key]["label"]}'
            argv += ['--model', label, self.path(name, STUDENT_FILE)]
            heads.append(f'{label}={_student_heads(student_cfg)}')
        student_cfg = student_cfg or self.config(self.table['dmt']['config'])
        argv += ['--random-init', f'student: random init={student_cfg}']
        if heads:
            argv += ['--num-heads'] + heads
        if self.opts.images:
            argv += ['--images'] + list(self.opts.images)
        return argv

    # ------------------------------------------------------------------ running
    def run(self, threads: int = 1, jobs: int = 1, verbose: bool = False, print_fn=print):
        """Run the stages, ``jobs`` at a time; the tools run in subprocesses with this
        process's environment (the installed dmt_mm, or the PYTHONPATH it was given) plus
        the thread limits."""
        stages = self.stages()
        env = dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        runner = StageRunner(self.root, cwd=self.root, env=env, verbose=verbose,
                             print_fn=print_fn, jobs=jobs)
        return runner.run(stages)
