"""What a benchmark config costs: a few training iterations of any shipped config (DMT
pretraining, COCO, ADE20K, ImageNet fine-tuning / linear probing) at its real input size and
per-GPU batch, built as ``tools/train.py`` builds it, on real fixture images; seconds per
iteration and peak memory, then GPU-hours of the full schedule (BENCHMARKS.md).

Data: the config's own dataset class over small real fixtures, repeated to fill batches --
photos laid out as an ImageNet folder (mmpretrain configs), a COCO folder with annotations
(mmdet) or an ADE20K-layout folder (mmseg). Weights: random (the student's pretrained
checkpoint and the teachers' files are not needed to time a step).
"""
import copy
import math
import os
import re
import statistics
from typing import Dict, Optional

import torch

from .data_throughput import imagenet_layout

# training images per epoch of the datasets the schedules count in epochs
DATASET_SIZES = {'ImageNet': 1281167, 'CocoDataset': 117266, 'ValidatedCocoDataset': 117266}


def gpus_of(config_name: str) -> Optional[int]:
    """GPUs of the recipe from the OpenMMLab name (``..._8xb128-...`` -> 8)."""
    match = re.search(r'_(\d+)xb\d+', config_name)
    return int(match.group(1)) if match else None


def schedule_iterations(cfg, gpus: int) -> Optional[int]:
    """Iterations of the full schedule on ``gpus`` GPUs at the config's per-GPU batch."""
    loop = cfg.train_cfg
    if 'max_iters' in loop:
        return int(loop.max_iters)
    dataset, repeats = cfg.train_dataloader.dataset, 1
    while dataset.get('dataset') is not None:  # RepeatDataset: `times` passes per epoch
        repeats *= int(dataset.get('times', 1))
        dataset = dataset.dataset
    size = DATASET_SIZES.get(str(dataset.get('type')).split('.')[-1])
    if size is None or 'max_epochs' not in loop:
        return None
    return int(loop.max_epochs) * math.ceil(repeats * size /
                                            (cfg.train_dataloader.batch_size * gpus))


def _inner_dataset(dataset):
    while dataset.get('dataset') is not None:
        dataset = dataset.dataset
    return dataset


def _point_data(cfg, data: Dict, tmp: str, images_needed: int):
    """Point the config's train dataset at the fixtures; repeat them to fill batches."""
    from mmengine.config import ConfigDict
    scope = cfg.get('default_scope', 'mmpretrain')
    loader = cfg.train_dataloader
    dataset = _inner_dataset(loader.dataset)
    if scope == 'mmpretrain':
        root = imagenet_layout(data['images'], os.path.join(tmp, 'imagenet'), images_needed)
        dataset.update(data_root=root + '/', split='train')
        dataset.pop('ann_file', None)
        dataset.pop('data_prefix', None)
        return
    if scope == 'mmdet':
        coco = data['coco']
        dataset.update(data_root=coco + '/', ann_file=data['coco_ann'],
                       data_prefix=dict(img='images/'))
        n = 1
    else:  # mmseg, ADE20K layout: images/<split>/*.jpg, annotations/<split>/*.png
        ade = data['ade']
        dataset.update(data_root=ade + '/', data_prefix=dict(img_path='images',
                                                             seg_map_path='annotations'))
        n = len([f for f in os.listdir(os.path.join(ade, 'images')) if f.endswith('.jpg')])
    # mmengine's RepeatDataset: an epoch long enough for the timed iterations
    loader.dataset = ConfigDict(type='RepeatDataset', times=max(1, math.ceil(images_needed / n)),
                                dataset=loader.dataset)


def cost_config(cfg, data: Dict, work_dir: str, tmp: str, iters: int, warmup: int,
                device, batch_size: Optional[int] = None, eager: bool = False):
    """The config as tools/train.py loads it, trained ``warmup + iters`` iterations."""
    cfg = copy.deepcopy(cfg)
    notes = []
    loader = cfg.train_dataloader
    if batch_size:
        loader.batch_size = batch_size
    loader.num_workers = min(loader.get('num_workers', 0), os.cpu_count() or 1)
    if loader.num_workers == 0:
        loader.persistent_workers = False
    total = warmup + iters
    _point_data(cfg, data, tmp, loader.batch_size * total)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=total)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.pop('param_scheduler', None)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10 ** 6)
    cfg.resume, cfg.load_from, cfg.work_dir, cfg.launcher = False, None, work_dir, 'none'
    model = cfg.model
    backbone = model.get('backbone', {})
    if isinstance(backbone.get('init_cfg'), dict):  # the student checkpoint: random weights
        backbone.init_cfg = None
    if model.get('type') == 'DMT':
        generator = model.target_generator
        generator.allow_random_teachers = True
        generator.teacher_checkpoints = {}
        for teacher in generator.teachers:
            teacher.checkpoint = None
    if eager and cfg.get('compile'):
        cfg.compile = None
        notes.append('compile off (--eager)')
    if torch.device(device).type != 'cuda' and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in ('dtype', 'loss_scale'):
            cfg.optim_wrapper.pop(key, None)
        notes.append('AmpOptimWrapper needs CUDA: OptimWrapper (fp32) here')
    return cfg, notes


def measure_config(config_path: str, data: Dict, device, iters=5, warmup=2,
                   batch_size: Optional[int] = None, eager: bool = False) -> Dict:
    """Seconds per training iteration (median of ``iters`` after ``warmup``) and peak memory
    of one config on one device, data loading included."""
    import tempfile

    from dmt_mm.engine.launch import load_config

    from .shipped import train_with_clock
    name = os.path.splitext(os.path.basename(config_path))[0]
    loaded = load_config(config_path)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, notes = cost_config(loaded, data, os.path.join(tmp, 'work'), tmp, iters, warmup,
                                 device, batch_size, eager)
        _, clock, wall, memory = train_with_clock(cfg, device)
    intervals = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
    timed = intervals[warmup:] or intervals
    s_iter = statistics.median(timed)
    gpus = gpus_of(name) or 8
    full_iters = schedule_iterations(loaded, gpus)
    batch = cfg.train_dataloader.batch_size
    return dict(config=config_path, batch_per_gpu=batch, recipe_gpus=gpus, iters=len(timed),
                warmup=warmup, s_per_iter=s_iter, first_iter_s=intervals[0] if intervals else None,
                images_per_s=batch / s_iter, peak_memory=memory, wall_s=wall, notes=notes,
                schedule_iters=full_iters,
                gpu_hours=(full_iters * s_iter * gpus / 3600) if full_iters else None,
                compile=cfg.get('compile'), optim_wrapper=cfg.optim_wrapper.get('type'),
                amp_dtype=cfg.optim_wrapper.get('dtype'))


def costs_markdown(results) -> str:
    """BENCHMARKS.md's table of configuration costs."""
    rows = ['| config | batch / GPU | s / iteration | images/s / GPU | peak memory | schedule '
            '(iterations on the recipe\'s GPUs) | GPU-hours (recipe\'s GPUs) |',
            '|---|---|---|---|---|---|---|']
    for r in results:
        name = os.path.basename(r['config'])
        if 'error' in r:
            rows.append(f'| `{name}` | failed: {r["error"][:120]} ||||||')
            continue
        mem = r['peak_memory']['bytes'] / 2 ** 30
        hours = '' if r['gpu_hours'] is None else f'{r["gpu_hours"]:.0f} ({r["recipe_gpus"]} GPUs)'
        rows.append(f'| `{name}` | {r["batch_per_gpu"]} | {r["s_per_iter"]:.3f} | '
                    f'{r["images_per_s"]:.1f} | {mem:.1f} GiB | {r["schedule_iters"] or "?"} | '
                    f'{hours} |')
    return '\n'.join(rows) + '\n'
