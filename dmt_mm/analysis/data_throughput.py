"""Images/s of a config's train pipeline in one dataloader worker, and the workers a GPU
needs to be fed (docs/performance.md)."""
import copy
import math
import os
import statistics
import time
from typing import Dict, List, Sequence

import torch


def pipeline_throughput(pipeline_cfg, image_paths: Sequence[str], num_images=64,
                        warmup=4) -> Dict:
    """Decoded + augmented images/s of one process (one dataloader worker: 1 torch thread,
    OpenCV single-threaded), running the config's train pipeline on real files.
    ``images_per_cpu_s`` divides by the process CPU time instead of wall time: what a worker
    with a core of its own achieves, even when the machine measuring is busy."""
    import cv2
    import mmpretrain.datasets  # noqa: F401  (registers the transforms)
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import TRANSFORMS
    init_default_scope('mmpretrain')
    if not image_paths:
        raise ValueError('pipeline_throughput needs at least one image file')
    transforms = [TRANSFORMS.build(copy.deepcopy(t)) for t in pipeline_cfg]
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(0)

    stage_s = [0.0] * len(transforms)

    def run(path, record=False):
        results = dict(img_path=path)
        for i, t in enumerate(transforms):
            s = time.perf_counter()
            results = t(results)
            if record:
                stage_s[i] += time.perf_counter() - s
        return results

    try:
        for i in range(warmup):
            run(image_paths[i % len(image_paths)])
        per_file = {}
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(num_images):
            path = image_paths[i % len(image_paths)]
            s = time.perf_counter()
            out = run(path, record=True)
            per_file.setdefault(os.path.basename(path), []).append(time.perf_counter() - s)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    sizes = {}
    for path in image_paths:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        sizes[os.path.basename(path)] = dict(
            hw=list(img.shape[:2]) if img is not None else None,
            file_kb=round(os.path.getsize(path) / 1024, 1))
    return dict(images_per_s_per_worker=num_images / elapsed,
                images_per_cpu_s=num_images / cpu, num_images=num_images,
                stage_ms={f'{i}:{c["type"]}': 1000 * t / num_images
                          for i, (c, t) in enumerate(zip(pipeline_cfg, stage_s))},
                output_shape=list(out['inputs'].shape),
                per_file_ms={k: 1000 * statistics.median(v) for k, v in per_file.items()},
                files=sizes, pipeline=[t['type'] for t in pipeline_cfg])


def train_pipeline(cfg):
    """The train pipeline of a config, looking through dataset wrappers."""
    dataset = cfg.train_dataloader.dataset
    while dataset is not None:
        if dataset.get('pipeline') is not None:
            return list(dataset['pipeline'])
        dataset = dataset.get('dataset')
    raise KeyError('no pipeline found under train_dataloader.dataset (or wrapped datasets)')


def workers_needed(step_images_per_s, worker_images_per_s, headroom=1.25) -> int:
    """Dataloader workers per GPU to feed the measured step rate with 25% headroom."""
    return max(1, math.ceil(headroom * step_images_per_s / worker_images_per_s))


def list_images(paths: Sequence[str]) -> List[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(os.path.join(p, f) for f in os.listdir(p)
                          if f.lower().endswith(('.jpg', '.jpeg', '.png')))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f'--pipeline: {p!r} is neither an image file nor a folder')
    if not out:
        raise FileNotFoundError(f'--pipeline: no .jpg/.jpeg/.png files in {list(paths)}')
    return out


def imagenet_layout(image_paths: Sequence[str], root: str, num_files: int) -> str:
    """``root/train/n00000000/`` holding ``num_files`` links to ``image_paths`` (cycled) and
    ``root/meta/train.txt`` listing them: an ImageNet-layout folder for the config's own
    dataset class."""
    folder = os.path.join(root, 'train', 'n00000000')
    os.makedirs(folder, exist_ok=True)
    os.makedirs(os.path.join(root, 'meta'), exist_ok=True)
    lines = []
    for i in range(num_files):
        src = os.path.abspath(image_paths[i % len(image_paths)])
        name = f'{i:06d}{os.path.splitext(src)[1].lower()}'
        os.symlink(src, os.path.join(folder, name))
        lines.append(f'n00000000/{name} 0\n')
    with open(os.path.join(root, 'meta', 'train.txt'), 'w') as f:
        f.writelines(lines)
    return root


def _cpu_seconds(pid) -> float:
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def loader_throughput(cfg, image_paths: Sequence[str], num_batches=8, batch_size=32,
                      warmup_batches=2) -> Dict:
    """Images/s of the config's train dataloader as ``tools/train.py`` builds it (the
    launch defaults: per-sample seeded dataset and sampler, robust loading), with ONE
    worker process over the given real images laid out as an ImageNet folder: wall rate
    and the worker's own CPU time per image (``/proc/<pid>/stat``), i.e. what one core
    delivers. Counted between the end of the warm-up batches and the last batch, so the
    worker's start and its prefetching cancel out."""
    import tempfile

    from mmengine.config import ConfigDict
    from mmengine.runner import Runner

    from dmt_mm.engine.defaults import (
        add_input_protections,
        add_training_defaults,
        reliability_options,
    )

    from .model_setup import import_config_modules
    cfg = copy.deepcopy(cfg)
    import_config_modules(cfg)
    cfg.setdefault('randomness', ConfigDict(seed=0))
    cfg.randomness.setdefault('seed', 0)
    opts = reliability_options(cfg)
    add_training_defaults(cfg, opts)
    add_input_protections(cfg, opts, ('train_dataloader', ))
    loader_cfg = cfg.train_dataloader
    loader_cfg.update(batch_size=batch_size, num_workers=1, persistent_workers=False)
    total = (num_batches + warmup_batches + 2) * batch_size  # + what prefetching reads
    with tempfile.TemporaryDirectory() as tmp:
        imagenet_layout(image_paths, tmp, total)
        dataset = loader_cfg.dataset
        while dataset is not None and dataset.get('type') != 'ImageNet' \
                and 'data_root' not in dataset:
            dataset = dataset.get('dataset')
        if dataset is None:
            raise KeyError('no dataset with a data_root under train_dataloader.dataset')
        dataset.update(data_root=tmp + '/', split='train')
        dataset.pop('ann_file', None)
        loader = Runner.build_dataloader(loader_cfg, seed=cfg.randomness.seed)
        it = iter(loader)
        for _ in range(warmup_batches):
            next(it)
        pid = it._workers[0].pid
        c0, t0 = _cpu_seconds(pid), time.perf_counter()
        for _ in range(num_batches):
            batch = next(it)
        elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - c0
        del it
    n = num_batches * batch_size
    inputs = batch['inputs']
    return dict(images_per_s_per_worker=n / elapsed, images_per_cpu_s=n / cpu,
                num_images=n, batch_size=batch_size, workers=1,
                input_kind=type(inputs).__name__,
                pipeline=[t['type'] for t in dataset['pipeline']],
                collate=str(loader_cfg.get('collate_fn', {}).get('type', 'default')))


def reference_pipeline(pipeline_cfg) -> List[dict]:
    """The pipeline with ``LoadRandomResizedCrop`` spelled out as mmpretrain's
    ``LoadImageFromFile`` + ``RandomResizedCrop`` (same arguments, pillow backend): what the
    fused transform replaces, for before / after measurements."""
    out = []
    for step in pipeline_cfg:
        step = copy.deepcopy(dict(step))
        if step.get('type') != 'LoadRandomResizedCrop':
            out.append(step)
            continue
        if step.get('gpu_decode'):
            raise ValueError('reference_pipeline: a gpu_decode pipeline has no CPU reference')
        crop = {k: step[k] for k in ('scale', 'crop_ratio_range', 'aspect_ratio_range',
                                     'max_attempts', 'interpolation') if k in step}
        out += [dict(type='LoadImageFromFile'),
                dict(type='RandomResizedCrop', backend='pillow', **crop)]
    return out


def with_train_pipeline(cfg, pipeline_cfg):
    """A copy of ``cfg`` whose train dataset (under its wrappers) runs ``pipeline_cfg``."""
    cfg = copy.deepcopy(cfg)
    dataset = cfg.train_dataloader.dataset
    while dataset.get('pipeline') is None:
        dataset = dataset.dataset
    dataset.pipeline = pipeline_cfg
    return cfg
