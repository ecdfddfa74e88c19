"""COCO evaluation and the real CocoDataset pipeline of the benchmark configs.

* mmdet's CocoMetric, fed the official cocoapi fake results (100 val2014 images), gives the
  published AP table, and the same numbers as pycocotools run directly on the json;
* each protocol's ViT-T config (shrunk in size only) trains one iteration from a student
  checkpoint and evaluates on a real COCO image through ``CocoDataset`` + ``CocoMetric``,
  with ``tools/train.py``; ``tools/test.py`` prints the 12-number table and writes results
  json that pycocotools reads.
"""
import json
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TEST_DATA, TOOLS, run_tool, shared_data
from mmengine.config import Config

# cocoapi results/val2014_fake_eval_res.txt (also PythonAPI/pycocoEvalDemo.ipynb)
PUBLISHED = {
    'bbox': dict(mAP=.505, mAP_50=.697, mAP_75=.573, mAP_s=.586, mAP_m=.519, mAP_l=.501,
                 AR100=.595),
    'segm': dict(mAP=.320, mAP_50=.562, mAP_75=.299, mAP_s=.387, mAP_m=.310, mAP_l=.327,
                 AR100=.417),
}
ITEMS = ['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']


def coco_metric_on_fake_results(iou_type):
    """Feed the fake results to CocoMetric as a detector's data samples would."""
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils
    folder = shared_data('coco_val2014_100_eval')
    gt_file = folder / 'instances_val2014_100.json'
    dets = json.loads((folder / f'instances_val2014_fake{iou_type}100_results.json').read_text())
    metric = CocoMetric(ann_file=str(gt_file), metric=iou_type,
                        metric_items=ITEMS + ['AR@100'])
    metric.dataset_meta = dict(classes=CocoDataset.METAINFO['classes'])
    cat_ids = sorted(c['id'] for c in json.loads(gt_file.read_text())['categories'])
    per_image = defaultdict(list)
    for det in dets:
        per_image[det['image_id']].append(det)
    samples = []
    for image in json.loads(gt_file.read_text())['images']:
        found = per_image[image['id']]
        if iou_type == 'segm':
            boxes = [mask_utils.toBbox(d['segmentation']).tolist() for d in found]
        else:
            boxes = [d['bbox'] for d in found]
        boxes = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy, as detectors predict
        pred = dict(bboxes=boxes, scores=torch.tensor([d['score'] for d in found]),
                    labels=torch.tensor([cat_ids.index(d['category_id']) for d in found]))
        if iou_type == 'segm':
            pred['masks'] = [dict(d['segmentation']) for d in found]
        samples.append(dict(pred_instances=pred, img_id=image['id'],
                            ori_shape=(image['height'], image['width'])))
    metric.process({}, samples)
    return metric.compute_metrics(metric.results), gt_file, dets


def pycocotools_stats(gt_file, dets, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if iou_type == 'segm':  # as CocoMetric: instance areas from masks, not boxes
        dets = [{k: v for k, v in d.items() if k != 'bbox'} for d in dets]
    gt = COCO(str(gt_file))
    evaluator = COCOeval(gt, gt.loadRes(dets), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


@pytest.mark.slow
@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_coco_metric_equals_pycocotools_and_published_table(iou_type):
    metrics, gt_file, dets = coco_metric_on_fake_results(iou_type)
    stats = pycocotools_stats(gt_file, dets, iou_type)
    for index, item in enumerate(ITEMS):
        assert metrics[f'{iou_type}_{item}'] == round(float(stats[index]), 3), item
        assert metrics[f'{iou_type}_{item}'] == PUBLISHED[iou_type][item], item
    # CocoMetric's recall uses maxDets (100, 300, 1000): its AR@100 is cocoapi's AR100
    ar100 = PUBLISHED[iou_type]['AR100']
    assert metrics[f'{iou_type}_AR@100'] == round(float(stats[8]), 3) == ar100


# --- real COCO image through the benchmark configs -------------------------------------
COCO_MINI = TEST_DATA / 'coco_real_mini'
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # avoids OpenMP spin-waits on a busy machine


def shrink(value, factor):
    """Scale image sizes (ints, pairs, lists of pairs) of a pipeline by ``factor``."""
    if isinstance(value, (list, tuple)):
        return type(value)(shrink(v, factor) for v in value)
    return max(32, int(round(value * factor)))


def shrunk_config(path, checkpoint, work_dir, factor=0.25):
    """The benchmark config, unchanged but for sizes (the image's and the proposal counts),
    data paths, CPU settings and the checkpoint files."""
    cfg = Config.fromfile(str(path))
    pipelines = []
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        dataset = loader.dataset
        if dataset.type == 'RepeatDataset':  # LSJ recipe repeats the train set
            dataset.times = 1
            dataset = dataset.dataset
        dataset.update(data_root=str(COCO_MINI) + '/', ann_file='instances_785_allcats.json',
                       data_prefix=dict(img='images/'))
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        pipelines.append(dataset.pipeline)

    def visit(transforms):
        for t in transforms:
            for key in ('scale', 'scales', 'crop_size'):
                if key in t:
                    t[key] = shrink(t[key], factor)
            if t.type == 'RandomChoice':
                for option in t.transforms:
                    visit(option)
    for pipeline in pipelines:
        visit(pipeline)
    for augment in cfg.model.data_preprocessor.get('batch_augments') or []:
        augment.size = shrink(augment.size, factor)
    preprocessor = cfg.model.data_preprocessor
    if preprocessor.pad_size_divisor > 32:  # ViTDet: the canvas every image is padded to
        preprocessor.pad_size_divisor = shrink(preprocessor.pad_size_divisor, factor)
    if cfg.model.backbone.get('rel_pos_img_size'):
        cfg.model.backbone.rel_pos_img_size = shrink(cfg.model.backbone.rel_pos_img_size,
                                                     factor)
    cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    # proposals and sampled RoIs shrink with the image: the 4conv1fc heads on 1,000-2,000
    # of them were most of a CPU step at a sixteenth of the pixels
    train_cfg, test_cfg = cfg.model.train_cfg, cfg.model.test_cfg
    for proposals in (train_cfg.rpn_proposal, test_cfg.rpn):
        proposals.update(nms_pre=int(proposals.nms_pre * factor),
                         max_per_img=int(proposals.max_per_img * factor))
    for stage in train_cfg.rcnn:
        stage.sampler.num = int(stage.sampler.num * factor)
    test_cfg.rcnn.score_thr = 0.0  # an untrained model must still detect something
    # one weights-only file: writing the recipe's two files with AdamW state (1 GB) took
    # longer than the training step
    cfg.default_hooks.checkpoint.update(save_best=None, save_optimizer=False)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = str(COCO_MINI / 'instances_785_allcats.json')
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.optim_wrapper.pop('dtype', None)
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.work_dir = str(work_dir)
    out = work_dir.parent / f'{work_dir.name}_config.py'
    cfg.dump(str(out))
    return out


def student_checkpoint(path):
    """A DMT-style checkpoint of a ViT-T/16 student (224 px, CLS token)."""
    from dmt_mm.models.backbones.dmt_vit import DMTViT
    torch.manual_seed(0)
    student = DMTViT(arch='vit-tiny', img_size=224, patch_size=16, with_cls_token=True)
    student.init_weights()
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in student.state_dict().items()}),
               path)
    return path


def read_scalars(work_dir):
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    assert logs, f'no scalars.json under {work_dir}'
    return [json.loads(line) for line in logs[-1].read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize('protocol', ['f2p-fpn', 'win14-simplefpn'])
def test_real_coco_image_trains_and_evaluates(protocol, tmp_path):
    path = next((CONFIGS / 'benchmarks' / 'mmdet').glob(f'*vit-tiny-p16-{protocol}_*.py'))
    config = shrunk_config(path, student_checkpoint(tmp_path / 'student.pth'),
                           tmp_path / 'train')
    run_tool([TOOLS / 'train.py', config], cwd=tmp_path, env=ONE_THREAD)
    records = read_scalars(tmp_path / 'train')
    losses = [r for r in records if 'loss' in r]
    assert len(losses) == 1 and math.isfinite(losses[0]['loss'])
    assert all(k in losses[0] for k in ('loss_rpn_cls', 's0.loss_bbox', 's2.loss_mask'))
    evaluated = [r for r in records if 'coco/bbox_mAP' in r]
    assert evaluated and 'coco/segm_mAP' in evaluated[-1]
    if protocol != 'win14-simplefpn':
        return
    # tools/test.py: the 12-number tables and the results json, which pycocotools reads
    checkpoint = (tmp_path / 'train' / 'last_checkpoint').read_text().strip()
    prefix = tmp_path / 'test' / 'results'
    out = run_tool([TOOLS / 'test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
                    '--cfg-options', f'test_evaluator.outfile_prefix={prefix}'],
                   cwd=tmp_path, env=ONE_THREAD)
    for kind in ('Average Precision  (AP)', 'Average Recall     (AR)'):
        assert out.stdout.count(kind) == 12, kind  # 6 lines each, for bbox and for segm
    tested = json.loads((tmp_path / 'test' / 'test_metrics.json').read_text())
    assert tested['coco/bbox_mAP'] == pytest.approx(evaluated[-1]['coco/bbox_mAP'], abs=1e-3)
    for kind in ('bbox', 'segm'):
        dets = json.loads((tmp_path / 'test' / f'results.{kind}.json').read_text())
        assert dets and {d['image_id'] for d in dets} == {785}
        stats = pycocotools_stats(COCO_MINI / 'instances_785_allcats.json', dets, kind)
        assert tested[f'coco/{kind}_mAP'] == round(float(stats[0]), 3)
        assert np.isfinite(stats).all()
