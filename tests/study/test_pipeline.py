"""The miniature study (tools/run_pipeline.py): stage runner and resume, results table,
PCA picture, and a shortened run of the whole pipeline end to end."""
import csv
import json
import math
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TOOLS, run_tool

from dmt_mm.study.design import StudyOptions
from dmt_mm.study.results import Run, aggregate, build_results, check_row_values, collect_runs
from dmt_mm.study.runner import MARKER, StageError, StageRunner, command, read_marker
from dmt_mm.study.runner import Stage as S
from dmt_mm.study.study import Study
from dmt_mm.study.work_dirs import ResultsError, pretrain_seconds, task_values

STUDY_CONFIGS = CONFIGS / 'toy' / 'pipeline'


def options(**kwargs):
    """Study options with this checkout's tools and configs (as tools/run_pipeline.py)."""
    return StudyOptions(tools_dir=str(TOOLS), configs_dir=str(STUDY_CONFIGS), **kwargs)

PY = sys.executable


# ---------------------------------------------------------------- stage runner
def _write(path, text):
    return [PY, '-c', f'open({str(path)!r}, "a").write({text!r})']


def _stages(root, fail=False, n_iters='3'):
    a = S('a', 'first', [command(_write(osp.join(root, 'a', 'out.txt'), 'A'))],
          outputs=['out.txt'])
    b_cmd = [PY, '-c', 'import sys; print("Iter(train) [ 1/3]  loss: 0.5"); sys.exit(3)'] \
        if fail else _write(osp.join(root, 'b', 'out.txt'), n_iters)
    b = S('b', 'second', [command(b_cmd)], deps=['a'], outputs=['out.txt'])
    c = S('c', 'third', [command(func=lambda d: open(osp.join(d, 'c.txt'), 'w').write('C'))],
          deps=['b'], outputs=['c.txt'], spec=dict(n=n_iters))
    return [a, b, c]


def test_runner_runs_skips_and_marks_last(tmp_path):
    lines = []
    runner = StageRunner(str(tmp_path), print_fn=lines.append)
    markers = runner.run(_stages(str(tmp_path)))
    assert [m['stage'] for m in markers.values()] == ['a', 'b', 'c']
    assert open(tmp_path / 'b' / 'out.txt').read() == '3'
    assert any(line.startswith('[2/3] b: done in') for line in lines)
    assert 'python' in open(tmp_path / 'a' / 'stage.log').read()  # the command is logged

    lines.clear()
    runner.run(_stages(str(tmp_path)))
    assert all('skipped' in line for line in lines), lines
    assert open(tmp_path / 'a' / 'out.txt').read() == 'A'  # not appended twice


def test_interrupted_stage_restarts_from_an_empty_folder(tmp_path):
    runner = StageRunner(str(tmp_path), print_fn=lambda s: None)
    runner.run(_stages(str(tmp_path)))
    os.remove(tmp_path / 'b' / MARKER)  # as if killed before the marker was written
    (tmp_path / 'b' / 'half_written.pth').write_text('x')
    lines = []
    StageRunner(str(tmp_path), print_fn=lines.append).run(_stages(str(tmp_path)))
    assert not (tmp_path / 'b' / 'half_written.pth').exists()
    assert open(tmp_path / 'b' / 'out.txt').read() == '3'  # rewritten once, not appended
    assert any('stopped inside it' in line for line in lines)
    # b was redone, so c (which depends on it) is redone too; a is kept
    assert any(line.startswith('[1/3] a: done earlier') for line in lines)
    assert any(line.startswith('[3/3] c: redoing it') for line in lines)


def test_changed_stage_is_redone_with_everything_after_it(tmp_path):
    runner = StageRunner(str(tmp_path), print_fn=lambda s: None)
    runner.run(_stages(str(tmp_path)))
    first_a = read_marker(str(tmp_path / 'a'))
    lines = []
    StageRunner(str(tmp_path), print_fn=lines.append).run(_stages(str(tmp_path), n_iters='5'))
    assert read_marker(str(tmp_path / 'a')) == first_a
    assert open(tmp_path / 'b' / 'out.txt').read() == '5'
    assert sum('redoing it' in line for line in lines) == 2


def test_failure_names_stage_and_log_and_writes_no_marker(tmp_path):
    runner = StageRunner(str(tmp_path), print_fn=lambda s: None)
    with pytest.raises(StageError, match=r"stage 'b' failed.*exited with 3") as info:
        runner.run(_stages(str(tmp_path), fail=True))
    assert 'Iter(train) [ 1/3]' in str(info.value)  # the log tail is in the message
    assert read_marker(str(tmp_path / 'b')) is None
    assert read_marker(str(tmp_path / 'a')) is not None
    runner.run(_stages(str(tmp_path)))  # fixed: b and c run, a is kept
    assert read_marker(str(tmp_path / 'c')) is not None


def test_missing_output_is_an_error(tmp_path):
    stage = S('x', 'writes nothing', [command([PY, '-c', 'pass'])], outputs=['result.json'])
    with pytest.raises(StageError, match=r"did not write \['result.json'\]"):
        StageRunner(str(tmp_path), print_fn=lambda s: None).run([stage])


def test_progress_lines():
    assert StageRunner._progress('Iter(train) [ 40/300]  lr: 1e-3  loss: 0.4123  x') == \
        'train iter 40/300, loss 0.4123'
    assert StageRunner._progress('Epoch(train) [3][5/9]  lr: 1  loss: 1.79') == \
        'train epoch 3, iter 5/9, loss 1.79'
    assert StageRunner._progress('loading annotations') is None


# ---------------------------------------------------------------- results
def _scalars(work_dir, records, stamp='20260101_000000'):
    folder = osp.join(work_dir, stamp, 'vis_data')
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'scalars.json'), 'a') as f:
        for rec in records:
            f.write(json.dumps(rec) + '\n')


def test_pretrain_seconds_and_metrics_by_hand(tmp_path):
    wd = str(tmp_path / 'pre')
    _scalars(wd, [dict(lr=1e-3, loss=1.0, time=0.5, iter=10, step=10),
                  dict(lr=1e-3, loss=0.5, time=0.7, iter=20, step=20),
                  dict(data_time=0.1, time=9.0, step=20)])  # an evaluation record: ignored
    assert pretrain_seconds(wd) == pytest.approx((0.5 + 0.7) / 2 * 20)

    assert task_values('det', {'coco/bbox_mAP': 0.123, 'coco/segm_mAP': 0.045})[0] == \
        pytest.approx({'ap_box': 12.3, 'ap_mask': 4.5})
    values, notes = task_values('det', {})  # CocoMetric found no detections at all
    assert values == {'ap_box': 0.0, 'ap_mask': 0.0} and 'no detections' in notes[0]
    assert task_values('seg', {'mIoU': 55.5, 'aAcc': 90})[0] == {'miou': 55.5}
    assert task_values('cls', {'accuracy/top1': 62.5})[0] == {'top1': 62.5}
    # a factor of a probe that scored several in one pass (MultiTasksMetric's keys); never
    # the category's top-1 in its place
    several = {'accuracy/top1': 20.0, 'colour_accuracy/top1': 80.0, 'size_accuracy/top1': 45.0}
    assert task_values('knn/colour', several)[0] == {'knn_top1/colour': 80.0}
    for metrics in (several, {'accuracy/top1': 79.0}):
        with pytest.raises(ResultsError, match='no texture_accuracy/top1 in the metrics'):
            task_values('knn/texture', metrics)
    assert task_values('seg_linear/depth', {'mIoU': 30.0})[0] == \
        {'seg_linear_miou/depth': 30.0}
    with pytest.raises(ResultsError, match='without mIoU'):
        task_values('seg', {'aAcc': 90})


def test_table_mean_std_over_seeds(tmp_path):
    runs = []
    for seed, top1, miou in ((0, 50.0, 60.0), (1, 60.0, 62.0), (2, 70.0, 64.0)):
        for task, metrics in (('cls', {'accuracy/top1': top1}), ('seg', {'mIoU': miou})):
            wd = tmp_path / f'{task}{seed}'
            wd.mkdir()
            (wd / 'test_metrics.json').write_text(json.dumps(metrics))
            runs.append(Run('DMT', task, str(wd), seed, dict(teachers='A + B')))
    wd = tmp_path / 'scratch'
    _scalars(str(wd), [{'accuracy/top1': 40.0, 'step': 3}])  # evaluation logged in training
    runs.append(Run('scratch', 'cls', str(wd), 0))
    rows = aggregate(collect_runs(runs))
    dmt = rows[0]['columns']
    assert dmt['top1']['mean'] == pytest.approx(60.0)
    assert dmt['top1']['std'] == pytest.approx(10.0)  # sample std of 50, 60, 70
    assert dmt['miou']['std'] == pytest.approx(2.0)
    assert rows[1]['columns']['top1'] == dict(mean=40.0, std=None, n=1, values=[40.0],
                                              seeds=[0])

    out = build_results(runs, str(tmp_path), title='T', notes=['a note'])
    md = out['markdown']
    assert '| DMT | A + B | 60.0 ± 10.0 | - | - | 62.0 ± 2.0 | - |' in md
    assert '| scratch |  | 40.0 | - | - | - | - |' in md and '- a note' in md
    with open(out['paths']['csv']) as f:
        line = next(csv.DictReader(f))
    assert float(line['top1']) == 60.0 and float(line['top1_std']) == 10.0
    assert line['top1_n'] == '3' and line['ap_box'] == ''


def test_out_of_range_metrics_are_refused(tmp_path):
    (tmp_path / 'test_metrics.json').write_text(json.dumps({'mIoU': float('nan')}))
    rows = aggregate(collect_runs([Run('m', 'seg', str(tmp_path))]))
    assert check_row_values(rows)
    with pytest.raises(ResultsError, match='out of range'):
        build_results([Run('m', 'seg', str(tmp_path))], str(tmp_path))


@pytest.mark.slow
def test_collect_results_tool(tmp_path):
    wd = tmp_path / 'cls'
    wd.mkdir()
    (wd / 'test_metrics.json').write_text(json.dumps({'accuracy/top1': 75.0}))
    out = tmp_path / 'out'
    proc = run_tool([TOOLS / 'analysis_tools' / 'collect_results.py', '--run', 'MAE', 'cls',
                     wd, '--out-dir', out, '--title', 'Mine'], cwd=tmp_path)
    assert '| MAE |  | 75.0 |' in proc.stdout
    assert (out / 'results.md').read_text().startswith('# Mine')
    proc = run_tool([TOOLS / 'analysis_tools' / 'collect_results.py', '--run', 'MAE', 'cls',
                     tmp_path / 'nowhere'], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and 'does not exist' in proc.stdout


# ---------------------------------------------------------------- PCA picture
def test_pca_rgb_recovers_a_two_part_image():
    """Tokens of the left and right halves differ along one direction: the first component
    (red channel) separates them, and the map is in [0, 1]."""
    from dmt_mm.study.features import pca_rgb
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(6, 6, 32, generator=g) * 0.05
    feats[:, :3, 0] += 3.0
    rgb = pca_rgb([feats])[0]
    assert rgb.shape == (6, 6, 3) and rgb.min() >= 0 and rgb.max() <= 1
    left, right = rgb[:, :3, 0].mean(), rgb[:, 3:, 0].mean()
    assert abs(left - right) > 0.8


@pytest.mark.slow
def test_visualize_features_tool(tmp_path):
    """An official-layout teacher file and a student file -> one PNG, one column each."""
    from dmt_mm.checkpoint.backbone import save_backbone_checkpoint
    from dmt_mm.checkpoint.export import official_checkpoint, save_official
    from dmt_mm.models.backbones import DMTViT
    from dmt_mm.study.features import default_images
    arch = dict(embed_dims=48, num_layers=2, num_heads=3, feedforward_channels=96)
    torch.manual_seed(0)
    teacher = DMTViT(arch=arch, img_size=32, patch_size=8)
    save_official(official_checkpoint('mae', teacher.state_dict()), str(tmp_path / 't.pth'))
    student = DMTViT(arch=dict(arch, num_heads=2), img_size=32, patch_size=16)
    save_backbone_checkpoint(student.state_dict(), str(tmp_path / 's.pth'))
    images = default_images()
    assert len(images) >= 3 and all(osp.isfile(p) for p in images)
    out = tmp_path / 'pca.png'
    proc = run_tool([TOOLS / 'analysis_tools' / 'visualize_features.py', '--model', 'T',
                     tmp_path / 't.pth', '--model', 'S', tmp_path / 's.pth', '--num-heads',
                     'T=3', 'S=2', '--images', images[0], '--size', '64', '--out', out],
                    cwd=tmp_path)
    assert 'T: 8x8 tokens' in proc.stdout and 'S: 4x4 tokens' in proc.stdout
    import matplotlib.image as mpimg
    assert mpimg.imread(str(out)).shape[1] > mpimg.imread(str(out)).shape[0]  # 3 columns


# ---------------------------------------------------------------- the whole study
@pytest.fixture(scope='module')
def quick_study(tmp_path_factory):
    """tools/run_pipeline.py --quick: every stage, a few iterations each."""
    root = tmp_path_factory.mktemp('pipeline')
    proc = run_tool([TOOLS / 'run_pipeline.py', '--quick', '--work-dir', root], cwd=root,
                    timeout=1200)
    return root, proc


@pytest.mark.slow
def test_quick_study_writes_every_artifact_with_numbers_in_range(quick_study):
    root, proc = quick_study
    for i, name in enumerate(['data', 'teacher_mae', 'teacher_mocov3', 'teacher_byol', 'dmt',
                              'extract_dmt', 'det_dmt', 'seg_dmt', 'cls_dmt', 'knn_dmt',
                              'linear_dmt', 'seg_linear_dmt', 'results'], 1):
        assert f'[{i}/13] {name}: done in' in proc.stdout
        assert read_marker(str(root / name)) is not None
    results = root / 'results'
    for name in ('results.md', 'results.csv', 'results.json', 'results_figure.png',
                 'loss_pretraining.png', 'loss_transfer.png', 'pca_features.png', 'runs.json'):
        assert (results / name).stat().st_size > 0, name
    with open(results / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['method'] for r in rows] == ['DMT (TFD + SFD)']
    for key, hi in (('top1', 100), ('ap_box', 100), ('ap_mask', 100), ('miou', 100),
                    ('knn_top1', 100), ('linear_top1', 100), ('seg_linear_miou', 100),
                    ('pretrain_s', math.inf)):
        value = float(rows[0][key])
        assert math.isfinite(value) and 0 <= value <= hi, (key, value)
    assert float(rows[0]['pretrain_s']) > 0
    assert 'DMT (TFD + SFD) | MAE + MoCo v3 + BYOL' in (results / 'results.md').read_text()
    import matplotlib.image as mpimg
    assert mpimg.imread(str(results / 'pca_features.png')).ndim == 3
    # teacher diversity: linear CKA of the three teachers and the student, before and after
    cka = {when: json.loads((results / f'teacher_cka_{when}.json').read_text())
           for when in ('before', 'after')}
    for when, res in cka.items():
        assert mpimg.imread(str(results / f'teacher_cka_{when}.png')).ndim == 3
        models = {row.rsplit('.b', 1)[0] for row in res['rows']}
        assert models == {'mae', 'mocov3', 'byol', 'student'}, models
        values = np.array(res['values'])
        assert np.allclose(np.diag(values), 1, atol=1e-4) and values.min() >= -1e-6
    teachers = [i for i, r in enumerate(cka['before']['rows']) if not r.startswith('student')]
    same = np.ix_(teachers, teachers)  # the teachers do not change; the student does
    assert np.allclose(np.array(cka['before']['values'])[same],
                       np.array(cka['after']['values'])[same], atol=1e-6)
    assert not np.allclose(cka['before']['values'], cka['after']['values'], atol=1e-6)


@pytest.mark.slow
def test_quick_study_teachers_are_official_files_loaded_by_the_real_path(quick_study):
    """The teacher files have the official layouts, unsigned like downloads, and the DMT
    stage's log shows each loaded through checkpoint_format='auto'."""
    from dmt_mm.checkpoint.loading import is_signed, safe_torch_load
    from dmt_mm.checkpoint.vit_layouts import convert_vit_state_dict
    root, _ = quick_study
    expected = {'teacher_mae/mae_pretrain_vit_toy.pth': ('mae', 'model'),
                'teacher_mocov3/mocov3_vit-toy-p8.pth.tar': ('mocov3', 'state_dict'),
                'teacher_byol/byol_vittoy16_pretrain_full_checkpoint.pth': ('dino', 'teacher')}
    log = (root / 'dmt' / 'stage.log').read_text()
    for rel, (fmt, container) in expected.items():
        path = str(root / rel)
        assert not is_signed(path)
        ckpt = safe_torch_load(path)
        assert container in ckpt
        assert convert_vit_state_dict(ckpt).fmt == fmt
        assert f'loaded ViT weights from {osp.basename(path)}: {fmt} layout' in log
    student = torch.load(str(root / 'extract_dmt' / 'student_vit-toy-p16.pth'),
                         weights_only=True)
    assert all(k.startswith('backbone.') for k in student['state_dict'])


@pytest.mark.slow
def test_quick_study_resumes(quick_study):
    """A rerun skips every finished stage; an interrupted stage restarts from scratch."""
    root, _ = quick_study
    os.remove(root / 'results' / MARKER)
    (root / 'results' / 'stale.txt').write_text('from a killed run')
    proc = run_tool([TOOLS / 'run_pipeline.py', '--quick', '--work-dir', root], cwd=root)
    skipped = [line for line in proc.stdout.splitlines() if 'done earlier' in line]
    assert len(skipped) == 12
    assert '[13/13] results: an earlier run stopped inside it' in proc.stdout
    assert not (root / 'results' / 'stale.txt').exists()
    assert (root / 'results' / 'results.md').exists()


def test_options_are_checked():
    with pytest.raises(ValueError, match='unknown length overrides'):
        Study(options(overrides=dict(det_iterations=3)))
    with pytest.raises(ValueError, match='at least 1'):
        Study(options(seeds=0))
    with pytest.raises(ValueError, match="tools_dir='' does not hold train.py"):
        Study(StudyOptions())  # the package does not guess a checkout
    with pytest.raises(ValueError, match='configs_dir=.* does not hold dmt_vit-toy'):
        Study(StudyOptions(tools_dir=str(TOOLS), configs_dir=str(CONFIGS)))
    study = Study(options(with_baselines=True, seeds=2, profile='quick', work_dir='w'))
    names = [s.name for s in study.stages()]
    assert names[:4] == ['data', 'teacher_mae', 'teacher_mocov3', 'teacher_byol']
    assert {'dmt', 'dmt_s1', 'cls_scratch_s1', 'det_dmt_sfd', 'extract_dmt_mae_s1'} <= \
        set(names)
    assert 'scratch' not in names and 'extract_scratch' not in names  # nothing to pretrain
    # 6 pretrained methods x 2 seeds x (pretrain + extract + 3 transfers + 3 probes) + 2
    # seeds x 6 for scratch; the k-NN stage also fills the factor columns
    assert len(names) == 4 + 6 * 2 * 8 + 2 * 6 + 1
    assert np.unique(names).size == len(names)
    knn = [r for r in study.runs if r.work_dir == study.path('knn_scratch_s1')]
    assert [r.task for r in knn] == ['knn', 'knn/colour', 'knn/texture', 'knn/size']


def test_stage_commands_use_the_given_checkout_and_fit_the_configs():
    """Commands run the tools and configs passed in; the teacher files the DMT stage sets
    land in the config's target generator, one per teacher."""
    from mmengine.config import Config
    study = Study(options(profile='quick', work_dir='w'))
    stages = {s.name: s for s in study.stages()}
    argv = [str(a) for a in stages['dmt'].commands[0].argv]
    assert argv[0] == str(TOOLS / 'train.py') and argv[1].startswith(str(STUDY_CONFIGS))
    cfg = Config.fromfile(argv[1])
    overrides = dict(o.split('=', 1) for o in argv[argv.index('--cfg-options') + 1:])
    cfg.merge_from_dict(overrides)
    files = dict(cfg.model.target_generator.teacher_checkpoints)
    assert list(files) == [t.name for t in cfg.model.target_generator.teachers]
    assert all(path == study.path(f'teacher_{name}', osp.basename(path))
               and osp.basename(path) == stages[f'teacher_{name}'].outputs[0]
               for name, path in files.items())


@pytest.mark.slow
def test_default_lengths_are_the_configs_own():
    """The default run passes its lengths explicitly; they equal the configs' values, so
    `tools/train.py <pipeline config>` by hand reproduces a stage."""
    from mmengine.config import Config

    from dmt_mm.study.design import (
        CONTROLLED_METHODS,
        CONTROLLED_TEACHERS,
        METHODS,
        PROFILES,
        TASKS,
        TEACHERS,
    )
    lengths = PROFILES['default']

    def cfg(name):
        return Config.fromfile(str(STUDY_CONFIGS / name))

    for t in TEACHERS + CONTROLLED_TEACHERS:
        assert cfg(t['config']).train_cfg.max_iters == lengths['teacher_iters'], t['config']
    for m in list(METHODS.values()) + list(CONTROLLED_METHODS.values()):
        if m['config']:
            assert cfg(m['config']).train_cfg.max_iters == lengths['dmt_iters'], m['config']
    for task, spec in TASKS.items():
        c = cfg(spec['config'])
        if spec['by'] == 'iters':
            assert c.train_cfg.max_iters == lengths[f'{task}_iters']
        elif spec['by'] == 'epochs':
            assert c.train_cfg.max_epochs == lengths[f'{task}_epochs']


def test_knn_stage_scores_the_study_factors_with_the_base_preprocessing():
    """The study's k-NN config scores exactly KNN_FACTORS, each with its number of values,
    and preprocesses as the toy k-NN config it extends (only the packed labels differ)."""
    from mmengine.config import Config

    from dmt_mm.datasets.toy_world import FACTORS
    from dmt_mm.study.design import KNN_FACTORS, TASKS
    study = Config.fromfile(str(STUDY_CONFIGS / TASKS['knn']['config']))
    base = Config.fromfile(str(CONFIGS / 'toy' / 'knn_vit-toy-p16_k20-t0.07_toyworld-cls.py'))
    assert study.model.extra_labels == {f: len(FACTORS[f]) for f in KNN_FACTORS}
    metric = next(m for m in study.test_evaluator if m['type'] == 'MultiTasksMetric')
    assert list(metric['task_metrics']) == list(KNN_FACTORS)
    for loader in (study.model.prototype, study.test_dataloader):
        assert loader.dataset.extra_factors == list(KNN_FACTORS)
        *transforms, pack = loader.dataset.pipeline
        assert transforms == base.test_dataloader.dataset.pipeline[:-1]
        assert pack == dict(type='PackInputs',
                            algorithm_keys=[f'gt_label_{f}' for f in KNN_FACTORS])


def test_random_students_written_at_once_are_the_seeds_own(tmp_path):
    """The study writes the random-init students in threads (two stages at a time): each
    equals the one written alone under its seed, and the caller's RNG is left as it was."""
    from concurrent.futures import ThreadPoolExecutor

    from dmt_mm.study.design import METHODS
    from dmt_mm.study.inputs import write_random_student
    config = str(STUDY_CONFIGS / METHODS['dmt']['config'])
    write_random_student(config, 0, str(tmp_path / 'alone.pth'))
    state = torch.get_rng_state()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: write_random_student(config, i % 2, str(tmp_path / f'{i}.pth')),
                      range(8)))
    assert torch.equal(torch.get_rng_state(), state)

    def weights(name):
        return torch.load(tmp_path / name, weights_only=False)['state_dict']
    alone, seed1 = weights('alone.pth'), weights('1.pth')
    for i in range(8):
        other = weights(f'{i}.pth')
        assert all(torch.equal(other[k], (alone if i % 2 == 0 else seed1)[k]) for k in alone), i
    assert not all(torch.equal(alone[k], seed1[k]) for k in alone)


def test_config_digest_follows_local_bases(tmp_path):
    """Editing any config a stage inherits from changes the stage's signature."""
    from dmt_mm.study.inputs import config_digest
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'grand.py').write_text('a = 1\n')
    (tmp_path / 'sub' / 'parent.py').write_text("_base_ = ['../grand.py',\n"
                                                "          'mmpretrain::x.py']\nb = 2\n")
    (tmp_path / 'child.py').write_text("_base_ = './sub/parent.py'\nc = 3\n")
    before = config_digest(str(tmp_path / 'child.py'))
    assert before == config_digest(str(tmp_path / 'child.py'))
    (tmp_path / 'grand.py').write_text('a = 2\n')
    assert config_digest(str(tmp_path / 'child.py')) != before


# ---------------------------------------------------------------- parallel stages, options
def _timed(root, name, seconds, deps=(), fail=False):
    out = str(osp.join(root, name, 't.json'))
    code = (f'import time, json; t = time.time(); time.sleep({seconds}); '
            f'open({out!r}, "w").write(json.dumps([t, time.time()]))'
            + ('; raise SystemExit(2)' if fail else ''))
    return S(name, name, [command([PY, '-c', code])], deps=list(deps), outputs=['t.json'])


def test_two_jobs_overlap_independent_stages_and_wait_for_dependencies(tmp_path):
    root = str(tmp_path)
    stages = [_timed(root, 'a', 1.0), _timed(root, 'b', 1.0), _timed(root, 'c', 0.1, ['a', 'b'])]
    StageRunner(root, print_fn=lambda s: None, jobs=2).run(stages)
    spans = {n: json.load(open(tmp_path / n / 't.json')) for n in 'abc'}
    assert spans['a'][0] < spans['b'][1] and spans['b'][0] < spans['a'][1]  # side by side
    assert spans['c'][0] >= max(spans['a'][1], spans['b'][1])  # after both inputs


def test_a_failure_lets_the_running_stage_finish_and_starts_nothing_new(tmp_path):
    root = str(tmp_path)
    stages = [_timed(root, 'bad', 0.1, fail=True), _timed(root, 'slow', 1.5),
              _timed(root, 'later', 0.1, ['slow'])]
    lines = []
    with pytest.raises(StageError, match="stage 'bad' failed"):
        StageRunner(root, print_fn=lines.append, jobs=2).run(stages)
    assert read_marker(str(tmp_path / 'slow')) is not None  # finished and kept
    assert not (tmp_path / 'later').exists()
    assert any('waiting for the 1 running stage(s) to finish' in line for line in lines)


def test_controlled_study_plan():
    """--controlled: three teachers with known objectives, DMT from all three and from each,
    random init, and one dense linear probe per factor of every student and teacher."""
    from dmt_mm.study.design import CONTROLLED_FACTORS
    study = Study(options(controlled=True, profile='quick', work_dir='w'))
    stages = {s.name: s for s in study.stages()}
    names = list(stages)
    assert names[:4] == ['data', 'teacher_category', 'teacher_appearance', 'teacher_geometry']
    for key in ('dmt', 'dmt_category', 'dmt_appearance', 'dmt_geometry'):
        assert {key, f'extract_{key}'} <= set(names)
    probed = ['dmt', 'dmt_category', 'dmt_appearance', 'dmt_geometry', 'scratch',
              'teacher-category', 'teacher-appearance', 'teacher-geometry']
    assert {f'seg_linear-{f}_{m}' for f in CONTROLLED_FACTORS for m in probed} <= set(names)
    assert len(names) == 4 + 4 * 2 + len(CONTROLLED_FACTORS) * len(probed) + 1
    argv = [str(a) for a in stages['seg_linear-depth_dmt_geometry'].commands[0].argv]
    assert 'train_dataloader.dataset.factor=depth' in argv
    assert 'model.decode_head.num_classes=3' in argv
    assert f'model.backbone.init_cfg.checkpoint={study.path("extract_dmt_geometry")}' in \
        ' '.join(argv)
    teacher = [str(a) for a in stages['seg_linear-colour_teacher-appearance'].commands[0].argv]
    assert 'model.backbone.arch.embed_dims=96' in teacher
    assert 'model.decode_head.in_channels=96' in teacher
    assert any(a.endswith('teacher_appearance/appearance_teacher_vit-toy-p16.pth')
               for a in teacher)
    with pytest.raises(ValueError, match="unknown methods \\['dmt_mae'\\]"):
        Study(options(controlled=True, methods=['dmt_mae']))


def _run_pipeline_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('run_pipeline', TOOLS / 'run_pipeline.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args,message', [
    (['--threads', '0'], 'error: --threads 0: must be at least 1 (e.g. --threads 1)'),
    (['--jobs', '-1'], 'error: --jobs -1: must be at least 1 (e.g. --jobs 1)'),
    (['--set', 'det_iters=-5'],
     'error: --set det_iters=-5: lengths are positive integers (e.g. --set det_iters=160)'),
    (['--set', 'seg_linear_iters=0'], 'error: --set seg_linear_iters=0: lengths are positive'),
    (['--set', 'det_iters=many'], 'error: --set det_iters=many: not an integer'),
], ids=['threads', 'jobs', 'negative-length', 'zero-length', 'not-a-number'])
def test_bad_options_get_one_line(args, message, tmp_path):
    with pytest.raises(SystemExit) as exc:
        _run_pipeline_module().main(['--work-dir', str(tmp_path / 'w'), *args])
    text = str(exc.value.code)
    assert text.startswith(message) and '\n' not in text
    assert not (tmp_path / 'w').exists()


@pytest.mark.slow
def test_bad_option_on_the_command_line(tmp_path):
    """As a user sees it: one line on the terminal, no traceback, exit status 1."""
    proc = run_tool([TOOLS / 'run_pipeline.py', '--work-dir', tmp_path / 'w', '--set',
                     'det_iters=-5'], cwd=tmp_path, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()
             and 'Warning' not in line and 'pkg_resources' not in line
             and not line.startswith('  ')]
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout
    assert lines[0].startswith('error: --set det_iters=-5: lengths are positive integers')
