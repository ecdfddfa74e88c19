"""The toy detection run (ViTDet recipe, shrunk) learns on CPU, and tools/test.py agrees.

One full run of the toy config (300 iterations from scratch, ~2.5 CPU minutes) is
shared by the tests of this file:

* its bbox / segm AP is far above the same run with lr = 0 (with lr = 0 AdamW changes no
  weight, so 4 iterations of it equal 300; the model has no batch-norm statistics);
* ``tools/test.py`` on its checkpoint reproduces the AP logged at the end of training,
  prints the 12-number COCO tables and writes results json whose AP pycocotools recomputes.
"""
import json

import pytest
from conftest import CONFIGS, TOOLS, run_tool
from test_det_coco import pycocotools_stats
from test_det_coco import read_scalars as scalars

pytestmark = pytest.mark.slow  # end-to-end training runs through tools/*.py

CONFIG = CONFIGS / 'toy' / 'cascade-mask-rcnn_vit-toy-simplefpn_1xb4-300it_toyworld.py'
# Small CPU ops: one thread costs little on an idle machine and avoids OpenMP spin-waits,
# which made 2-thread runs several times slower on a busy one.
ONE_THREAD = {'OMP_NUM_THREADS': '1'}


def last_eval(records):
    evaluated = [r for r in records if 'coco/bbox_mAP' in r]
    assert evaluated, 'no evaluation in the training log'
    return evaluated[-1]


@pytest.fixture(scope='module')
def trained(small_toy_world, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('toy_det') / 'train'
    run_tool([TOOLS / 'train.py', CONFIG, '--work-dir', work_dir], cwd=small_toy_world,
             env=ONE_THREAD)
    return work_dir


def test_toy_detection_learns_far_above_lr_zero(trained, small_toy_world, tmp_path):
    records = scalars(trained)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert losses[-1] < 0.6 * losses[0]
    learned = last_eval(records)
    run_tool([TOOLS / 'train.py', CONFIG, '--work-dir', tmp_path / 'lr0', '--cfg-options',
              'optim_wrapper.optimizer.lr=0', 'train_cfg.max_iters=4',
              'train_cfg.val_interval=4'], cwd=small_toy_world, env=ONE_THREAD)
    frozen = last_eval(scalars(tmp_path / 'lr0'))
    print(f"toy AP bbox/segm: trained {learned['coco/bbox_mAP']}/{learned['coco/segm_mAP']}, "
          f"lr=0 {frozen['coco/bbox_mAP']}/{frozen['coco/segm_mAP']}")
    assert learned['coco/bbox_mAP'] >= 0.3 and frozen['coco/bbox_mAP'] <= 0.05
    assert learned['coco/segm_mAP'] >= 0.2 and frozen['coco/segm_mAP'] <= 0.05


def test_test_tool_reproduces_the_logged_ap(trained, small_toy_world, tmp_path):
    logged = last_eval(scalars(trained))
    checkpoint = (trained / 'last_checkpoint').read_text().strip()
    prefix = tmp_path / 'results'
    out = run_tool([TOOLS / 'test.py', CONFIG, checkpoint, '--work-dir', tmp_path / 'test',
                    '--cfg-options', f'test_evaluator.outfile_prefix={prefix}'],
                   cwd=small_toy_world, env=ONE_THREAD)
    tested = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())
    for kind in ('bbox', 'segm'):
        for item in ('mAP', 'mAP_50', 'mAP_75'):
            key = f'coco/{kind}_{item}'
            assert tested[key] == pytest.approx(logged[key], abs=1e-3), key
        # the printed table and the results json hold the same numbers
        assert f"{kind}_mAP_copypaste: {tested[f'coco/{kind}_mAP']:.3f}" in out.stdout
        dets = json.loads((tmp_path / f'results.{kind}.json').read_text())
        stats = pycocotools_stats(
            small_toy_world / 'data/toy_world/annotations/instances_val.json', dets, kind)
        assert tested[f'coco/{kind}_mAP'] == round(float(stats[0]), 3)
    for line in ('Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all',
                 'Average Recall     (AR) @[ IoU=0.50:0.95 | area= small'):
        assert out.stdout.count(line) == 2, line  # once for bbox, once for segm
    assert out.stdout.count('Average Precision') == out.stdout.count('Average Recall') == 12
