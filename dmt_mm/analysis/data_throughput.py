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
