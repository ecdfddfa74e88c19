"""The frozen teachers under each ``target_generator.teacher_execution`` setting
(dmt_mm/models/teachers/execution.py): time of the target generator (K teachers + target
norms) per batch, peak memory, and -- for settings that change the numbers (FP8) -- the
drift of every target against the bf16 eager ones: mean cosine similarity over tokens and
relative L2 error, per teacher and target. Inputs: real photos through the config's own
train pipeline and data preprocessor.

    python tools/analysis_tools/benchmark_teachers.py CONFIG --images DIR_OR_FILES
        [--random-teachers] [--batch-size 128] [--modes eager compile cudagraphs
        compile-freezing fp8 fp8-compile] [--iters 10] [--warmup 3] [--out teachers.json]

With ``--random-teachers`` the teachers are randomly initialised ViTs: the timings hold, the
FP8 drift is that of random weights, not of the published checkpoints (pass the teacher
checkpoints through --cfg-options model.target_generator.teacher_checkpoints.NAME=PATH).
"""
import argparse
import copy
import datetime
import json
import os
import os.path as osp
import sys

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction

from dmt_mm import analysis as A
from dmt_mm.errors import run_tool_main
from dmt_mm.models.teachers.execution import TeacherExecution

MODES = {'eager': dict(mode='eager'), 'compile': dict(mode='compile'),
         'cudagraphs': dict(mode='cudagraphs'),
         'compile-freezing': dict(mode='compile', freezing=True),
         'fp8': dict(mode='eager', fp8=True), 'fp8-compile': dict(mode='compile', fp8=True)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--images', nargs='+', required=True)
    p.add_argument('--random-teachers', action='store_true')
    p.add_argument('--batch-size', type=int, default=None)
    p.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--img-size', type=int, default=None)
    p.add_argument('--student-arch', default=None)
    p.add_argument('--teacher-arch', default=None)
    p.add_argument('--device', default=None)
    p.add_argument('--out', default=None)
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def real_batch(cfg, model, image_paths, batch_size, device):
    """``batch_size`` crops of the photos through the config's train pipeline (a different
    per-sample seed each), collated and preprocessed as in training."""
    from mmengine.dataset import default_collate
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import TRANSFORMS
    init_default_scope('mmpretrain')
    steps = [TRANSFORMS.build(copy.deepcopy(t)) for t in A.train_pipeline(cfg)]
    if any(type(s).__name__ == 'PackJpegInputs' for s in steps):
        raise ValueError('benchmark_teachers: use a config that decodes on the CPU')
    items = []
    for i in range(batch_size):
        np.random.seed(i)
        results = dict(img_path=image_paths[i % len(image_paths)])
        for step in steps:
            results = step(results)
        items.append(results)
    data = model.data_preprocessor(dict(default_collate(items)), True)['inputs']
    x = data[0] if isinstance(data, (list, tuple)) else data
    return x.to(device)


def drift(reference, targets, names):
    out = {}
    for name, ref, got in zip(names, reference, targets):
        for key in ref:
            a, b = ref[key].float(), got[key].float()
            cos = F.cosine_similarity(a, b, dim=-1).mean().item()
            rel = ((a - b).norm() / a.norm().clamp_min(1e-12)).item()
            out[f'{name}/{key}'] = dict(cosine=cos, rel_l2=rel)
    return out


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    A.prepare_config(cfg, img_size=args.img_size, student_arch=args.student_arch,
                     teacher_arch=args.teacher_arch, random_teachers=args.random_teachers)
    batch = args.batch_size or cfg.train_dataloader.batch_size
    model = A.build_model(cfg, device)
    model.train()
    x = real_batch(cfg, model, A.list_images(args.images), batch, device)
    grid = model._student_grid(x)
    base = model.target_generator
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        command=' '.join([osp.relpath(sys.argv[0]) if sys.argv else 'benchmark_teachers.py',
                          *(argv if argv is not None else sys.argv[1:])]),
        hardware=A.device_info(device), batch_size=batch, random_teachers=args.random_teachers,
        teachers=base.names, modes={})
    with torch.no_grad():
        reference = base(x, grid)

    def save():
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out + '.tmp', 'w') as f:
                json.dump(result, f, indent=1, default=str)
            os.replace(args.out + '.tmp', args.out)

    for name in args.modes:  # each on its own copy: FP8 converts the weights in place
        entry = dict(settings=MODES[name])
        try:
            generator = copy.deepcopy(base)
            TeacherExecution(**MODES[name]).apply(generator.teachers)
            A.reset_peak_memory(device)
            timing = A.time_calls(lambda g=generator: g(x, grid), args.iters, args.warmup,
                                  device)
            entry.update(ms_median=1000 * timing['median'], ms_min=1000 * timing['min'],
                         images_per_s=batch / timing['median'],
                         peak_memory=A.peak_memory(device))
            with torch.no_grad():
                entry['drift_vs_eager_bf16'] = drift(reference, generator(x, grid), base.names)
            del generator
        except Exception as exc:  # noqa: BLE001 -- record it, go on with the next mode
            entry['error'] = f'{type(exc).__name__}: {str(exc).strip()[:400]}'
        result['modes'][name] = entry
        eager = result['modes'].get('eager', {}).get('ms_median')
        if 'error' in entry:
            print(f'[{name}] FAILED: {entry["error"]}', flush=True)
        else:
            worst = min(v['cosine'] for v in entry['drift_vs_eager_bf16'].values())
            speed = f', {eager / entry["ms_median"]:.2f}x eager' if eager else ''
            print(f'[{name}] teachers + norms {entry["ms_median"]:.1f} ms / batch {batch} '
                  f'({entry["images_per_s"]:.0f} images/s{speed}), peak memory '
                  f'{entry["peak_memory"]["bytes"] / 2 ** 30:.2f} GiB; lowest target cosine '
                  f'vs bf16 eager {worst:.5f}', flush=True)
        save()
        A.timing.cleanup(device)
    return result


if __name__ == '__main__':
    run_tool_main(main)
