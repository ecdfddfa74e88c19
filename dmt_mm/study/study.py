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
checkout's), so the package never guesses a source tree from its own location. What can be
chosen (teachers, methods, tasks, profiles) is in :mod:`.design`; this module plans stages.
"""
import os.path as osp
from typing import Dict, List, Optional

from dmt_mm.datasets.toy_world import FACTORS

from .design import (
    CONTROLLED_FACTORS,
    CONTROLLED_NOTES,
    CONTROLLED_TEACHERS,
    KNN_FACTORS,
    STUDENT_FILE,
    TABLE_NOTES,
    TASKS,
    TEACHERS,
    WORLDS,
    StudyOptions,
)
from .inputs import config_digest, write_random_student
from .runner import Stage, StageRunner, command


def _student_heads(config: str) -> int:
    from mmengine.config import Config
    return int(Config.fromfile(config).model.backbone.arch['num_heads'])


def _suffix(seed: int) -> str:
    return '' if seed == 0 else f'_s{seed}'


def _log_options(lengths: Dict) -> List[str]:
    return [] if lengths['log_interval'] is None else \
        [f'default_hooks.logger.interval={lengths["log_interval"]}']


def _factor_options(task: str, factor: Optional[str]) -> List[str]:
    """--cfg-options that make a trained dense probe read one factor's label maps (the
    k-NN stage scores its factors itself: ``Study.columns_of``)."""
    if factor is None:
        return []
    if TASKS[task]['by'] is None:
        raise ValueError(f'{task}/{factor}: the study runs one stage per factor for the '
                         'trained probes only')
    return [f'{loader}.dataset.factor={factor}' for loader in
            ('train_dataloader', 'val_dataloader')] + \
        [f'model.decode_head.num_classes={len(FACTORS[factor])}']


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

    def columns_of(self, task: str) -> List[str]:
        """The table's tasks a stage of ``task`` fills: the main study's k-NN stage also
        scores the factors of KNN_FACTORS (its config's ``extra_labels``)."""
        if task == 'knn' and not self.controlled:
            return [task] + [f'knn/{factor}' for factor in KNN_FACTORS]
        return [task]

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
                    self.runs += [Run(method['label'], column, self.path(stage.name), seed, info)
                                  for column in self.columns_of(task)]
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
        from .columns import split_task
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
        if spec['by'] is None:  # k-NN, logistic regression: tools/test.py, student = checkpoint
            if student is None:
                student = osp.join(work_dir, 'random_' + STUDENT_FILE)
                commands.append(command(func=lambda d, s=seed, p=student: write_random_student(
                    self.config(self.table['dmt']['config']), s, p), label='random_student'))
            options += [f'model.feature_cache={osp.join(work_dir, f"{base}_train_features.pth")}']
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
            for stem, argv in self._cka_commands(out_dir, deps):
                commands.append(command(argv, label=f'teacher_cka ({stem})'))
                outputs += [f'{stem}.png', f'{stem}.json']
        return Stage('results', 'results table, figure, loss curves' +
                     ('' if self.controlled else ' and the feature PCA picture'), commands,
                     deps=deps, outputs=outputs,
                     spec=dict(runs=[(r.method, r.task, r.work_dir, r.seed) for r in runs]))

    def _cka_commands(self, out_dir: str, deps: List[str]):
        """teacher_cka.py on the DMT config of seed 0: linear CKA between the teachers and
        with the student before (initialised) and after distillation."""
        name = f'dmt{_suffix(self.seeds[0])}'
        if 'dmt' not in self.methods or f'extract_{name}' not in deps:
            return []
        method = self.table['dmt']
        argv = [self.tool('analysis_tools', 'teacher_cka.py'), self.config(method['config']),
                self.path('data', 'toy_world', 'images', 'val'), '--out-dir', out_dir,
                '--max-images', '32', '--teacher-checkpoint']
        argv += [f'{t["name"]}=' + self.path(f'teacher_{t["name"]}', t['file'])
                 for t in self.teachers if t['name'] in method['teachers']]
        after = ['--checkpoint', self.path(f'extract_{name}', STUDENT_FILE)]
        return [('teacher_cka_before', argv + ['--stem', 'teacher_cka_before']),
                ('teacher_cka_after', argv + ['--stem', 'teacher_cka_after'] + after)]

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
