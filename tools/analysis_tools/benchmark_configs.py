"""What each benchmark config costs: a few training iterations of every given config at its
real input size and per-GPU batch, built as tools/train.py builds it, on real fixture images
(dmt_mm/analysis/config_costs.py); seconds per iteration, peak memory and the GPU-hours of
the full schedule. Each config runs in its own process (one failure does not stop the
others; memory peaks do not mix).

    python tools/analysis_tools/benchmark_configs.py [CONFIG ...] --images DIR_OR_FILES
        [--coco DIR --coco-ann FILE] [--ade DIR] [--iters 5] [--warmup 2]
        [--batch-size N] [--eager] [--timeout 300] --out costs.json
    python tools/analysis_tools/benchmark_configs.py --summarize costs.json

Without CONFIG: every DMT pretraining config of the study (ViT-T/S/B) and every config under
configs/benchmarks/ (COCO both protocols, ADE20K, ImageNet fine-tuning and linear probing).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = [
    *(f'configs/dmt/dmt_vit-{a}-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'
      for a in ('tiny', 'small', 'base')),
    *(f'configs/benchmarks/mmdet/cascade-mask-rcnn_dmt-vit-{a}-p16-{p}_coco.py'
      for a, p in (('small', 'f2p-fpn_4conv1fc-giou_8xb4-amp-ms-crop-1x'),
                   ('small', 'win14-simplefpn_4conv1fc_8xb8-amp-lsj-100e'),
                   ('base', 'f2p-fpn_4conv1fc-giou_8xb2-amp-ms-crop-1x'),
                   ('base', 'win14-simplefpn_4conv1fc_8xb8-amp-lsj-100e'))),
    *(f'configs/benchmarks/mmseg/upernet_dmt-vit-{a}_ade20k-512x512.py'
      for a in ('small-p16-f2p_8xb2-amp-160k', 'small-p16-f2p-ibot_4xb4-amp-160k',
                'base-p16-f2p_8xb2-amp-160k')),
    *(f'configs/benchmarks/classification/dmt-vit-{a}_in1k.py'
      for a in ('small-p16_8xb128-coslr-200e', 'small-p16_8xb2048-linear-coslr-90e',
                'base-p16_8xb128-coslr-100e')),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='*', help='configs (default: the study\'s list)')
    p.add_argument('--images', nargs='+', default=[],
                   help='real photos (files or folders) for the ImageNet-layout configs')
    p.add_argument('--coco', default=None, help='COCO-layout folder with images/ (mmdet)')
    p.add_argument('--coco-ann', default=None, help='its annotation file, relative to --coco')
    p.add_argument('--ade', default=None,
                   help='ADE20K-layout folder with images/*.jpg and annotations/*.png (mmseg)')
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=None, help='override the per-GPU batch')
    p.add_argument('--eager', action='store_true', help='turn the configs\' compile off')
    p.add_argument('--device', default=None)
    p.add_argument('--timeout', type=int, default=300, help='seconds per config')
    p.add_argument('--out', default=None)
    p.add_argument('--summarize', nargs='+', default=None, metavar='JSON')
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)  # the child process
    return p.parse_args(argv)


def child(args):
    import torch

    from dmt_mm.analysis import list_images
    from dmt_mm.analysis.config_costs import measure_config
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    data = dict(images=list_images(args.images) if args.images else [],
                coco=args.coco, coco_ann=args.coco_ann, ade=args.ade)
    res = measure_config(args.one, data, device, iters=args.iters, warmup=args.warmup,
                         batch_size=args.batch_size, eager=args.eager)
    print('RESULT ' + json.dumps(res, default=str), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        return child(args)
    from dmt_mm.analysis.config_costs import costs_markdown
    if args.summarize:
        results = [r for path in args.summarize for r in json.load(open(path))['results']]
        text = costs_markdown(results)
        print(text)
        return text
    results = []
    for config in args.configs or DEFAULT_CONFIGS:
        cmd = [sys.executable, osp.abspath(__file__), '--one', config, '--iters',
               str(args.iters), '--warmup', str(args.warmup)]
        for flag, value in (('--coco', args.coco), ('--coco-ann', args.coco_ann),
                            ('--ade', args.ade), ('--device', args.device),
                            ('--batch-size', args.batch_size)):
            if value is not None:
                cmd += [flag, str(value)]
        if args.images:
            cmd += ['--images', *args.images]
        if args.eager:
            cmd.append('--eager')
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=args.timeout)
            line = next((x for x in proc.stdout.splitlines() if x.startswith('RESULT ')), None)
            if line is None:
                tail = [x for x in proc.stdout.splitlines() if x.strip()][-3:]
                res = dict(config=config, error=' | '.join(tail)[-400:])
            else:
                res = json.loads(line[len('RESULT '):])
        except subprocess.TimeoutExpired:
            res = dict(config=config, error=f'timed out after {args.timeout} s')
        results.append(res)
        if 'error' in res:
            print(f'[{config}] FAILED: {res["error"]}', flush=True)
        else:
            print(f'[{config}] batch {res["batch_per_gpu"]}: {res["s_per_iter"]:.3f} s/iteration, '
                  f'{res["images_per_s"]:.1f} images/s, peak '
                  f'{res["peak_memory"]["bytes"] / 2 ** 30:.2f} GiB; full schedule '
                  f'{res["schedule_iters"]} iterations = {res["gpu_hours"] or 0:.0f} GPU-hours on '
                  f'{res["recipe_gpus"]} GPUs', flush=True)
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out + '.tmp', 'w') as f:
                json.dump(dict(results=results), f, indent=1, default=str)
            os.replace(args.out + '.tmp', args.out)
    return results


if __name__ == '__main__':
    from dmt_mm.errors import run_tool_main
    run_tool_main(main)
