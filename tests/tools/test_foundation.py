"""The stack, the registries, the toy world and the generic tools in all three scopes."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONFIGS, REPO, TOOLS, free_port, run_tool, tool_env

from dmt_mm.version_check import REQUIRED, StackVersionError, check_mmcv_ops, check_versions


# --- versions ------------------------------------------------------------------------------
def test_installed_stack_is_the_tested_one():
    found = check_versions()
    assert found['mmcv'].startswith('2.1.') and found['mmdet'] == '3.3.0'
    check_mmcv_ops()  # compiled ops present


@pytest.mark.parametrize('dist,version,expected', [
    ('mmcv', '2.2.0', 'mmcv 2.2.0 is installed, need >=2.1.0,<2.2.0'),
    ('mmdet', '3.2.0', 'mmdet 3.2.0 is installed, need >=3.3.0,<3.4.0'),
    ('mmengine', None, 'mmengine is not installed'),
    ('numpy', '2.4.1', 'numpy 2.4.1 is installed'),
])
def test_version_mismatch_names_package_and_fix(dist, version, expected):
    def fake(name):
        return version if name == dist else {'mmcv': '2.1.0'}.get(name, REQUIRED[name][0])
    with pytest.raises(StackVersionError) as err:
        check_versions(version_of=fake)
    assert expected in str(err.value)
    assert 'tools/setup_env.sh' in str(err.value)


def test_detection_packages_are_optional_for_pretraining_but_required_by_their_parts(
        monkeypatch):
    from dmt_mm import version_check
    real = version_check.installed_version

    def without_mmdet(name):
        return None if name == 'mmdet' else real(name)
    assert 'mmdet' in check_versions(version_of=without_mmdet)  # absent: import still works
    monkeypatch.setattr(version_check, 'installed_version', without_mmdet)
    with pytest.raises(StackVersionError, match=r'mmdet is not installed; the detection'):
        version_check.require_task_package('mmdet')


def test_import_fails_fast_on_wrong_mmcv():
    """End to end: `import dmt_mm` with mmcv 2.2.0 reported fails with the fix in the text."""
    code = ('import importlib.metadata as m; real = m.version\n'
            'm.version = lambda d: "2.2.0" if d == "mmcv" else real(d)\n'
            'import dmt_mm')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode != 0
    assert 'mmcv 2.2.0 is installed, need >=2.1.0,<2.2.0' in proc.stderr
    assert 'StackVersionError' in proc.stderr


def test_missing_mmcv_ops_message(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv._ext', None)  # import of it now raises
    with pytest.raises(StackVersionError, match='without its compiled ops'):
        check_mmcv_ops()


# --- registration ----------------------------------------------------------------------------
def test_student_backbone_reachable_from_every_scope():
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    import dmt_mm.det  # noqa: F401
    import dmt_mm.engine  # noqa: F401
    import dmt_mm.models  # noqa: F401
    from dmt_mm.models.backbones import DMTViT
    assert PRETRAIN_MODELS.get('DMTViT') is DMTViT
    assert DET_MODELS.get('mmpretrain.DMTViT') is DMTViT
    assert SEG_MODELS.get('mmpretrain.DMTViT') is DMTViT
    assert DET_MODELS.get('SimpleFPN') is not None
    assert OPTIM_WRAPPER_CONSTRUCTORS.get('LayerDecayOptimWrapperConstructor') is not None


def test_vit_arch_aliases_are_the_real_vit_sizes():
    import torch

    from dmt_mm.models.backbones import DMTViT
    with torch.device('meta'):
        counts = {a: sum(p.numel() for p in DMTViT(arch=a).parameters())
                  for a in ('vit-tiny', 'vit-small', 'vit-base')}
    assert 5.5e6 < counts['vit-tiny'] < 6.0e6
    assert 21.5e6 < counts['vit-small'] < 22.5e6
    assert 85.5e6 < counts['vit-base'] < 86.5e6


# --- toy world -------------------------------------------------------------------------------
def test_toy_world_is_deterministic_and_consistent(tmp_path):
    import cv2
    from pycocotools.coco import COCO

    from dmt_mm.datasets import CLASSES, ToyWorldSpec, generate_toy_world
    spec = ToyWorldSpec(num_train=6, num_val=2, cls_per_class_train=1, cls_per_class_val=1)
    a, b = tmp_path / 'a', tmp_path / 'b'
    generate_toy_world(str(a), spec)
    generate_toy_world(str(b), spec)
    for rel in ('images/train/train_00003.png', 'seg/train/train_00003.png',
                'annotations/instances_train.json', f'cls/val/{CLASSES[2]}/0000.png'):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    coco = COCO(str(a / 'annotations/instances_train.json'))
    assert len(coco.getImgIds()) == 6 and len(coco.getCatIds()) == len(CLASSES)
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        label = cv2.imread(str(a / 'seg/train' / info['file_name']), cv2.IMREAD_UNCHANGED)
        assert label.max() <= len(CLASSES)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            mask = coco.annToMask(ann).astype(bool)
            # every instance mask lies on pixels of its own class in the semantic map, and
            # the rasterised polygon covers (almost) the annotated area
            assert (label[mask] == ann['category_id']).mean() > 0.9
            assert abs(mask.sum() - ann['area']) <= 0.35 * ann['area'] + 20
            x, y, w, h = ann['bbox']
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1


# --- generic tools in the three scopes -------------------------------------------------------
def _last_json_log(work_dir):
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert logs, f'no scalars.json under {work_dir}'
    return [json.loads(line) for line in logs[-1].read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize('config,metric,extra', [
    ('mae_vit-toy-p16_1xb8-20it_toyworld.py', None, ['train_cfg.max_iters=4']),
    ('cascade-mask-rcnn_vit-toy-simplefpn_1xb4-300it_toyworld.py', 'coco/bbox_mAP',
     ['train_cfg.max_iters=4', 'train_cfg.val_interval=4']),
    ('upernet_vit-toy-f2p_1xb4-120it_toyworld-128x128.py', 'mIoU',
     ['train_cfg.max_iters=4', 'train_cfg.val_interval=4']),
], ids=['mmpretrain', 'mmdet', 'mmseg'])
def test_toy_config_trains_and_tests(config, metric, extra, small_toy_world, tmp_path):
    matches = sorted((CONFIGS / 'toy').glob(config.split('_')[0] + '_*'))
    path = CONFIGS / 'toy' / config if (CONFIGS / 'toy' / config).exists() else matches[0]
    work_dir = tmp_path / 'work'
    run_tool([TOOLS / 'train.py', path, '--work-dir', work_dir, '--cfg-options', *extra,
              'default_hooks.logger.interval=1'],
             cwd=small_toy_world)
    records = _last_json_log(work_dir)
    assert any('loss' in r for r in records)
    checkpoint = work_dir / (work_dir / 'last_checkpoint').read_text().strip().split('/')[-1]
    assert checkpoint.exists() and (work_dir / (checkpoint.name + '.sig')).exists()
    if metric is None:
        return
    logged = [r for r in records if any(k.endswith(metric) for k in r)][-1]
    out = run_tool([TOOLS / 'test.py', path, checkpoint, '--work-dir', tmp_path / 'test'],
                   cwd=small_toy_world)
    tested = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())
    key = next(k for k in tested if k.endswith(metric))
    assert tested[key] == pytest.approx(logged[key], abs=1e-3)
    if metric.startswith('coco'):
        assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in out.stdout


@pytest.mark.slow
def test_cpu_distributed_training_ranks_agree(small_toy_world, tmp_path):
    """Two processes, gloo on CPU, through tools/dist_train.sh; both end with equal weights
    and exit cleanly (no rank aborting at interpreter exit; tools/dist_train_repeat.sh
    repeats this run to count)."""
    work_dir = tmp_path / 'dist'
    proc = subprocess.run(
        ['bash', str(TOOLS / 'dist_train.sh'),
         str(CONFIGS / 'toy' / 'mae_vit-toy-p16_1xb8-20it_toyworld.py'), '2',
         '--work-dir', str(work_dir), '--cfg-options', 'train_cfg.max_iters=6'],
        cwd=small_toy_world, capture_output=True, text=True, timeout=600,
        env=tool_env({'PORT': str(free_port()), 'OMP_NUM_THREADS': '1'}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'terminate called' not in proc.stderr
    report = json.loads((work_dir / 'rank_consistency.json').read_text())
    assert report['world_size'] == 2 and report['agree'] is True
    assert report['fingerprints'][0] == report['fingerprints'][1]
