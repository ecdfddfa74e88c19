"""The DMT study in miniature: which stages run, with which configs and arguments.

data -> three teachers (MAE, MoCo v3, BYOL; each exported to its official file layout) ->
DMT -> extract the student -> transfer to detection / segmentation / classification ->
results (table, loss curves, PCA picture). ``--with-baselines`` adds single-teacher DMT,
TFD only, SFD only and a from-scratch student; ``--seeds N`` repeats DMT and transfer with
seeds 0..N-1 (the teachers play the part of downloaded checkpoints: trained once).

Every stage runs the project's own tools as subprocesses (``tools/train.py``,
``tools/test.py``, ``tools/model_converters/extract_student.py``) on the configs in
``configs/toy/pipeline/``; the commands are in each stage's ``stage.log``, so any stage
can be rerun by hand. Where the tools and configs are is the caller's to say
(``StudyOptions.tools_dir`` / ``configs_dir``; ``tools/run_pipeline.py`` passes its
checkout's), so the package never guesses a source tree from its own location.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional

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

# pretraining methods: table label, DMT config (None: no pretraining), teachers used
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
    'scratch': dict(label='random init (no pretraining)', config=None, teachers=[]),
}
BASELINES = ['dmt_mae', 'dmt_mocov3', 'dmt_byol', 'dmt_tfd', 'dmt_sfd', 'scratch']

# transfer tasks: config, how its length is set, what its checkpoint is called
TRANSFER = {
    'det': dict(config='cascade-mask-rcnn_dmt-vit-toy-simplefpn_1xb4-160it_toyworld.py',
                by='iters', title='toy detection (Cascade Mask R-CNN, COCO AP)'),
    'seg': dict(config='upernet_dmt-vit-toy-f2p_1xb4-160it_toyworld-128x128.py',
                by='iters', title='toy segmentation (UperNet, mIoU)'),
    'cls': dict(config='dmt-vit-toy-p16_1xb16-coslr-30e_toyworld-cls.py', by='epochs',
                title='toy classification (fine-tuning, top-1)'),
}

# lengths of every stage: 'default' equals the numbers in the configs' names
PROFILES = {
    'default': dict(teacher_iters=300, dmt_iters=300, det_iters=160, seg_iters=160,
                    cls_epochs=30, pca_size=224, log_interval=None),
    'quick': dict(teacher_iters=4, dmt_iters=4, det_iters=2, seg_iters=2, cls_epochs=1,
                  pca_size=64, log_interval=1),
}
STUDENT_FILE = 'student_vit-toy-p16.pth'
TABLE_NOTES = (
    'Toy world, CPU: a miniature of the paper\'s tables (ImageNet top-1 -> toy classification '
    'fine-tuning top-1; COCO Cascade Mask R-CNN AP -> toy detection AP; ADE20K UperNet mIoU '
    '-> toy segmentation mIoU). The numbers show that every stage works end to end; they '
    'are not evidence about DMT at scale.',
    'Teachers: MAE (masked image modelling), MoCo v3 (contrastive) and BYOL (EMA '
    'self-distillation; it stands in for iBOT / DINO, which mmpretrain 1.2 does not ship), '
    'pretrained with mmpretrain on the toy world\'s unlabeled images, saved in the official '
    'MAE / MoCo v3 / DINO file layouts and loaded with checkpoint_format=\'auto\'.',
    'pretrain time: the student\'s distillation (mmengine\'s mean iteration time x '
    'iterations, start-up and evaluation excluded), one process, CPU. random init: none.',
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
        lengths.update(self.overrides)
        return lengths

    def method_keys(self) -> List[str]:
        keys = list(self.methods) if self.methods else \
            ['dmt'] + (BASELINES if self.with_baselines else [])
        unknown = [k for k in keys if k not in METHODS]
        if unknown:
            raise ValueError(f'unknown methods {unknown}; choose from {list(METHODS)}')
        if self.seeds < 1:
            raise ValueError(f'--seeds must be at least 1, got {self.seeds}')
        return keys


def _suffix(seed: int) -> str:
    return '' if seed == 0 else f'_s{seed}'


def _log_options(lengths: Dict) -> List[str]:
    return [] if lengths['log_interval'] is None else \
        [f'default_hooks.logger.interval={lengths["log_interval"]}']


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

    # ------------------------------------------------------------------ stages
    def stages(self) -> List[Stage]:
        from .results import Run
        self.runs = []
        stages = [self._data_stage()]
        needed = sorted({t for m in self.methods for t in METHODS[m]['teachers']},
                        key=TEACHER_NAMES.index)
        stages += [self._teacher_stage(t) for t in TEACHERS if t['name'] in needed]
        for seed in self.seeds:
            for key in self.methods:
                method = METHODS[key]
                info = dict(teachers=' + '.join(t['label'] for t in TEACHERS
                                                if t['name'] in method['teachers']) or '-')
                student = None
                if method['config'] is not None:
                    pre, ext = self._pretrain_stages(key, seed)
                    stages += [pre, ext]
                    student = self.path(ext.name, STUDENT_FILE)
                    self.runs.append(Run(method['label'], 'pretrain', self.path(pre.name),
                                         seed, info))
                for task in TRANSFER:
                    stage = self._transfer_stage(task, key, seed, student)
                    stages.append(stage)
                    self.runs.append(Run(method['label'], task, self.path(stage.name), seed,
                                         info))
        stages.append(self._results_stage([s.name for s in stages]))
        return stages

    def _data_stage(self) -> Stage:
        def generate(stage_dir):
            from dmt_mm.datasets import ToyWorldSpec, generate_toy_world
            generate_toy_world(osp.join(stage_dir, 'toy_world'), ToyWorldSpec())
        return Stage('data', 'generating the toy world (COCO json, ADE-style maps, image '
                     'folders)', [command(func=generate, label='generate_toy_world')],
                     outputs=['toy_world/DONE'], spec=dict(spec='ToyWorldSpec()'))

    def _teacher_stage(self, teacher: Dict) -> Stage:
        name = f'teacher_{teacher["name"]}'
        work_dir = self.path(name)
        iters = self.lengths['teacher_iters']
        train = self._train(self.config(teacher['config']), work_dir,
                            [f'train_cfg.max_iters={iters}'] + _log_options(self.lengths))

        def export(stage_dir, teacher=teacher, iters=iters):
            from dmt_mm.utils.official_export import (export_algorithm_checkpoint,
                                                      save_official)
            from dmt_mm.utils.safe_load import safe_torch_load
            ckpt = safe_torch_load(osp.join(stage_dir, f'iter_{iters}.pth'))
            obj = export_algorithm_checkpoint(ckpt['state_dict'], teacher['algorithm'],
                                              teacher['fmt'], epoch=iters, arch='vit_toy')
            save_official(obj, osp.join(stage_dir, teacher['file']))

        return Stage(name, f'pretraining the {teacher["label"]} teacher ({teacher["paradigm"]}'
                     f', {iters} iters), saved in the official {teacher["fmt"]} layout',
                     [command(train, label='train'),
                      command(func=export, label=f'export_{teacher["fmt"]}')],
                     deps=['data'], outputs=[teacher['file']],
                     spec=dict(export=teacher['fmt'], file=teacher['file'],
                               config=config_digest(self.config(teacher['config']))))

    def _pretrain_stages(self, key: str, seed: int):
        method = METHODS[key]
        name = f'{key}{_suffix(seed)}'
        work_dir = self.path(name)
        iters = self.lengths['dmt_iters']
        options = [f'model.target_generator.teacher_checkpoints.{t["name"]}=' +
                   self.path(f'teacher_{t["name"]}', t['file'])
                   for t in TEACHERS if t['name'] in method['teachers']]
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

    def _transfer_stage(self, task: str, key: str, seed: int, student: Optional[str]):
        spec = TRANSFER[task]
        name = f'{task}_{key}{_suffix(seed)}'
        work_dir = self.path(name)
        config = self.config(spec['config'])
        if spec['by'] == 'iters':
            n = self.lengths[f'{task}_iters']
            options = [f'train_cfg.max_iters={n}']
            ckpt = f'iter_{n}.pth'
            length = f'{n} iters'
        else:
            n = self.lengths[f'{task}_epochs']
            options = [f'train_cfg.max_epochs={n}']
            ckpt = f'epoch_{n}.pth'
            length = f'{n} epochs'
        if student is None:
            options.append('model.backbone.init_cfg=None')
        else:
            options.append(f'model.backbone.init_cfg.checkpoint={student}')
        options.append(f'randomness.seed={seed}')
        train = self._train(config, work_dir, options + _log_options(self.lengths))
        train.append('--no-validate')  # evaluated once, by tools/test.py
        # the same options as training, so the config test.py dumps into the work dir
        # (over the training one) describes the same model
        test = [self.tool('test.py'), config, osp.join(work_dir, ckpt), '--work-dir',
                work_dir, '--cfg-options'] + options
        label = METHODS[key]['label']
        deps = ['data'] + ([f'extract_{key}{_suffix(seed)}'] if student else [])
        return Stage(name, f'{spec["title"]} from {label} ({length}, seed {seed})',
                     [command(train, label='train'), command(test, label='test')],
                     deps=deps, outputs=['test_metrics.json'],
                     spec=dict(config=config_digest(config)))

    def _results_stage(self, deps: List[str]) -> Stage:
        from .results import Run, write_manifest
        out_dir = self.path('results')
        runs = [Run(f'{t["label"]} teacher', 'teacher', self.path(f'teacher_{t["name"]}'), 0)
                for t in TEACHERS if f'teacher_{t["name"]}' in deps] + list(self.runs)
        manifest = osp.join(out_dir, 'runs.json')

        def write_runs(stage_dir, runs=runs):
            write_manifest(runs, manifest)

        collect = [self.tool('analysis_tools', 'collect_results.py'), '--manifest',
                   manifest, '--out-dir', out_dir, '--plots', '--title',
                   'DMT in miniature: transfer of the toy student', '--note', *TABLE_NOTES]
        return Stage('results', 'results table, loss curves and the feature PCA picture',
                     [command(func=write_runs, label='write_manifest'),
                      command(collect, label='collect_results'),
                      command(self._pca_command(out_dir, deps), label='visualize_features')],
                     deps=deps,
                     outputs=['results.md', 'results.csv', 'loss_pretraining.png',
                              'loss_transfer.png', 'pca_features.png'],
                     spec=dict(runs=[(r.method, r.task, r.work_dir, r.seed) for r in runs]))

    def _pca_command(self, out_dir: str, deps: List[str]) -> List[str]:
        """visualize_features.py over every teacher file and the students of seed 0."""
        from mmengine.config import Config
        teacher_heads = Config.fromfile(self.config(osp.join(
            '_base_', 'toy_ssl_data.py'))).toy_teacher_arch.num_heads
        argv = [self.tool('analysis_tools', 'visualize_features.py'), '--out',
                osp.join(out_dir, 'pca_features.png'), '--size', str(self.lengths['pca_size'])]
        heads = []
        for t in TEACHERS:
            if f'teacher_{t["name"]}' in deps:
                label = f'{t["label"]} teacher'
                argv += ['--model', label, self.path(f'teacher_{t["name"]}', t['file'])]
                heads.append(f'{label}={teacher_heads}')
        student_cfg = None
        for key in self.methods:
            config = METHODS[key]['config']
            name = f'extract_{key}{_suffix(self.seeds[0])}'
            if config is None or name not in deps:
                continue
            student_cfg = student_cfg or self.config(config)
            label = f'student: {METHODS[key]["label"]}'
            argv += ['--model', label, self.path(name, STUDENT_FILE)]
            heads.append(f'{label}={_student_heads(student_cfg)}')
        student_cfg = student_cfg or self.config(METHODS['dmt']['config'])
        argv += ['--random-init', f'student: random init={student_cfg}']
        if heads:
            argv += ['--num-heads'] + heads
        if self.opts.images:
            argv += ['--images'] + list(self.opts.images)
        return argv

    # ------------------------------------------------------------------ running
    def run(self, threads: int = 1, verbose: bool = False, print_fn=print):
        """Run the stages; the tools run in subprocesses with this process's environment
        (the installed dmt_mm, or the PYTHONPATH it was given) plus the thread limits."""
        stages = self.stages()
        env = dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        runner = StageRunner(self.root, cwd=self.root, env=env, verbose=verbose,
                             print_fn=print_fn)
        return runner.run(stages)
