"""Metrics and training logs read from mmengine work dirs.

Metrics are read from ``<work_dir>/test_metrics.json`` (written by ``tools/test.py``), else
from the last evaluation logged in ``<work_dir>/<timestamp>/vis_data/scalars.json``; so GPU
runs of the benchmark configs collect the same way as the toy study. :func:`task_values`
turns one task's metrics into its table columns (percent).
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Tuple

from .columns import TASK_COLUMNS, split_task


class ResultsError(ValueError):
    """A work dir holds no usable metrics for the task asked."""


def _timestamp_dirs(work_dir: str) -> List[str]:
    """mmengine's ``<work_dir>/<YYYYmmdd_HHMMSS>/vis_data/scalars.json``, oldest first."""
    return sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))


def read_scalars(work_dir: str) -> List[Dict]:
    """Every logged record of every run in ``work_dir`` (resumed runs append a folder)."""
    records = []
    for path in _timestamp_dirs(work_dir):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut by a kill
    return records


def train_records(work_dir: str) -> List[Dict]:
    """Training iterations' records (those logging a learning rate), by iteration."""
    recs = [r for r in read_scalars(work_dir) if 'lr' in r or 'base_lr' in r]
    return sorted(recs, key=lambda r: r.get('iter', r.get('step', 0)))


def read_metrics(work_dir: str) -> Tuple[Dict, str]:
    """(metrics, source): test_metrics.json, else the last evaluation in scalars.json."""
    path = osp.join(work_dir, 'test_metrics.json')
    if osp.isfile(path):
        with open(path) as f:
            return json.load(f), path
    evaluated = [r for r in read_scalars(work_dir)
                 if any(k in r for k in ('accuracy/top1', 'coco/bbox_mAP', 'mIoU'))]
    if evaluated:
        return evaluated[-1], osp.join(work_dir, '*/vis_data/scalars.json')
    raise ResultsError(f'no metrics in {work_dir}: neither test_metrics.json (tools/test.py '
                       'writes it) nor an evaluation in */vis_data/scalars.json')


def pretrain_seconds(work_dir: str) -> float:
    """Training time of a run: mmengine's per-iteration ``time`` averaged over the logged
    records times the iterations run (start-up and evaluation excluded)."""
    recs = [r for r in train_records(work_dir) if 'time' in r]
    if not recs:
        raise ResultsError(f'no training iterations logged in {work_dir}/*/vis_data/'
                           'scalars.json: not a training work dir?')
    iters = max(int(r.get('iter', r.get('step', 0))) for r in recs)
    mean = sum(float(r['time']) for r in recs) / len(recs)
    return mean * iters


def task_values(task: str, metrics: Dict) -> Tuple[Dict[str, float], List[str]]:
    """Table values of one task's metrics (percent), and notes on how they were read."""
    notes = []
    base, factor = split_task(task)
    if factor is not None:
        if base in ('knn', 'linear'):
            # a probe of the single-object split scores its factors beside the category and
            # reports '<factor>_accuracy/top1' (mmpretrain's MultiTasksMetric); its
            # 'accuracy/top1' is the category's and never stands in for a factor
            key = f'{factor}_accuracy/top1'
            if key not in metrics:
                raise ResultsError(f'no {key} in the metrics ({sorted(metrics)}): run the probe '
                                   f'with model.extra_labels naming {factor!r}')
            metrics = {'accuracy/top1': metrics[key]}
        values, notes = task_values(base, metrics)
        return {f'{k}/{factor}': v for k, v in values.items()}, notes
    if task in ('cls', 'knn', 'linear'):
        key = next((k for k in ('accuracy/top1', 'top1') if k in metrics), None)
        if key is None:
            raise ResultsError(f'classification metrics without accuracy/top1: {sorted(metrics)}')
        return {TASK_COLUMNS[task][0][0]: float(metrics[key])}, notes
    if task == 'det':
        values = {}
        for col, key in (('ap_box', 'coco/bbox_mAP'), ('ap_mask', 'coco/segm_mAP')):
            if key in metrics:
                values[col] = 100.0 * float(metrics[key])  # mmdet reports fractions
        if not values and not any(k.startswith('coco/') for k in metrics):
            # CocoMetric returns nothing when no box passed the score threshold
            notes.append('no detections above the score threshold: AP counted as 0')
            values = {'ap_box': 0.0, 'ap_mask': 0.0}
        if not values:
            raise ResultsError(f'detection metrics without coco/bbox_mAP: {sorted(metrics)}')
        return values, notes
    if task in ('seg', 'seg_linear'):
        if 'mIoU' not in metrics:
            raise ResultsError(f'segmentation metrics without mIoU: {sorted(metrics)}')
        return {TASK_COLUMNS[task][0][0]: float(metrics['mIoU'])}, notes
    raise ResultsError(f'task {task!r} has no metrics')
