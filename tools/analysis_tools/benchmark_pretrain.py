"""Time DMT pretraining steps: images/s, step time, peak memory, FLOPs and MFU, optionally
side by side with a naive peer, the full step versus the sum of its parts, and the data
pipeline's images/s per worker (docs/performance.md).

``--shipped`` first runs the config as tools/train.py does (its runner, optim wrapper, AMP
dtype and compile setting) for a few iterations on the ``--pipeline`` images through its
own data loader (end-to-end images/s), then times that runner's compiled train step alone
(variant ``shipped``); the peers and variants that follow run on the same model.

    python tools/analysis_tools/benchmark_pretrain.py CONFIG [--batch-size 256 128 64]
        [--random-teachers] [--student-arch vit-small] [--teacher-arch base] [--img-size 224]
        [--num-teachers K] [--peer naive [naive-nograd]] [--ablate] [--compile] [--parts]
        [--pipeline IMAGES...] [--shipped] [--loader] [--peak-tflops 989] [--iters 20]
        [--warmup 5]
        [--out result.json] [--cfg-options k=v ...]

Timed: ``model.train_step`` (preprocess, teachers, student, heads, losses, backward, optimizer
step through the config's optim wrapper) on a synthetic uint8 batch already on the device,
plus reading the logged values as the runner does; warm-up excluded. FLOPs: counted with
torch.utils.flop_counter (dmt_mm/analysis/flops.py); MFU = train FLOPs/image x images/s / peak,
train FLOPs = 3 x (student + heads) + 1 x teachers forward.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

from dmt_mm import analysis as A
from dmt_mm.errors import run_tool_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', nargs='?', help='a DMT pretraining config')
    p.add_argument('--summarize', nargs='+', metavar='JSON', default=None,
                   help='only print a Markdown table of earlier --out results')
    p.add_argument('--batch-size', type=int, nargs='+', default=None,
                   help='batch sizes to try in order (the next one after an out-of-memory); '
                   'default: the config\'s train_dataloader.batch_size')
    p.add_argument('--img-size', type=int, default=None, help='input size (student and teachers)')
    p.add_argument('--student-arch', default=None, help='e.g. vit-tiny, vit-small, vit-base')
    p.add_argument('--teacher-arch', default=None, help='arch of every teacher, e.g. base')
    p.add_argument('--num-teachers', type=int, default=None,
                   help='use K teachers (the config\'s, cycled; extra ones need --random-teachers)')
    p.add_argument('--random-teachers', action='store_true',
                   help='random frozen teachers (no checkpoint files needed; same cost)')
    p.add_argument('--variants', nargs='*', default=['optimized'], choices=sorted(A.VARIANTS),
                   help='step variants to time (dmt_mm/analysis/variants.py)')
    p.add_argument('--peer', nargs='+', default=[], choices=A.PEERS,
                   help='also time these peers in the same process and print the ratios')
    p.add_argument('--ablate', action='store_true',
                   help='also time the optimized step minus each optimisation')
    p.add_argument('--compile', action='store_true',
                   help='also time the optimized step with torch.compile (student, teachers, '
                   'heads)')
    p.add_argument('--parts', action='store_true',
                   help='full step versus the sum of its parts timed alone (overhead ratio)')
    p.add_argument('--parts-rounds', type=int, default=5)
    p.add_argument('--pipeline', nargs='+', default=None, metavar='IMAGE_OR_DIR',
                   help='measure the config\'s train pipeline on these images (per worker)')
    p.add_argument('--pipeline-images', type=int, default=64)
    p.add_argument('--shipped', action='store_true',
                   help='run the config as tools/train.py does on the --pipeline images (end to '
                   'end, real data loader), then time its compiled train step ("shipped")')
    p.add_argument('--shipped-iters', type=int, default=10,
                   help='timed end-to-end iterations of --shipped (after --warmup)')
    p.add_argument('--loader', action='store_true',
                   help='images/s of the config\'s train dataloader with one worker process on '
                   'the --pipeline images (worker CPU time: per core)')
    p.add_argument('--loader-batches', type=int, default=8)
    p.add_argument('--pipeline-reference', action='store_true',
                   help='also measure the pipeline (and with --loader the data loader) with '
                   'LoadRandomResizedCrop spelled out as mmpretrain\'s LoadImageFromFile + '
                   'RandomResizedCrop: before / after on the same images')
    p.add_argument('--iters', type=int, default=20, help='timed steps per variant')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    p.add_argument('--peak-tflops', type=float, default=None,
                   help='peak FLOP/s for MFU (default: dense bf16 of the detected GPU, e.g. '
                   'H100/H200 989; none on CPU)')
    p.add_argument('--no-flops', action='store_true', help='skip FLOPs counting')
    p.add_argument('--device', default=None, help='cuda or cpu (default: cuda if available)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--strict', action='store_true',
                   help='stop at the first failing variant (default: record it, go on)')
    p.add_argument('--out', default=None, help='write the results as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    return p.parse_args(argv)


def run_one(name, model, cfg, device, batch_sizes, args, size, flops, peak, result):
    """Time one variant, add FLOPs / MFU, print it; an error is recorded, not fatal."""
    variant = A.resolve_variant(name, device)
    try:
        res = A.run_variant(model, cfg, variant, batch_sizes, device, iters=args.iters,
                            warmup=args.warmup, size=size)
    except Exception as exc:  # noqa: BLE001 -- keep the other variants' numbers
        if args.strict:
            raise
        print(f'[{name}] FAILED: {exc!r}', file=sys.stderr, flush=True)
        result['variants'].append(dict(variant=name, error=repr(exc)))
        return
    if flops:
        res['train_flops_per_image'] = flops['train']
        res['achieved_tflops'] = flops['train'] * res['images_per_s'] / 1e12
        res['mfu'] = A.mfu(flops['train'], res['images_per_s'], peak)
        res['mfu_wall'] = A.mfu(flops['train'], res['images_per_s_wall'], peak)
    result['variants'].append(res)
    result['ratios'] = ratios(result['variants'])
    mfu = f', MFU {100 * res["mfu"]:.1f}%' if res.get('mfu') is not None else ''
    tflops = f', {res["achieved_tflops"]:.2f} TFLOP/s' if flops else ''
    cpu = res.get('step_cpu_time_median_s')
    cpu = f' (CPU time {1000 * cpu:.1f} ms)' if cpu else ''
    print(f'[{name}] batch {res["batch_size"]}: {res["images_per_s"]:.1f} images/s '
          f'(wall {res["images_per_s_wall"]:.1f}), step {1000 * res["step_time_median_s"]:.1f}'
          f' ms median{cpu}{tflops}{mfu}, peak memory {fmt_bytes(res["peak_memory"]["bytes"])}, '
          f'loss {res["loss"]:.4f}' + (f'  [{"; ".join(res["notes"])}]' if res['notes']
                                      else ''), flush=True)


def ratios(results):
    """images/s of the optimized and the shipped step over each other variant's (same
    process, same model)."""
    by_name = {r['variant']: r for r in results if 'error' not in r}
    out = {}
    for base_name in ('optimized', 'shipped'):
        base = by_name.get(base_name)
        if not base:
            continue
        out.update({f'{base_name}/{n}': base['images_per_s'] / r['images_per_s']
                    for n, r in by_name.items() if n != base_name})
        if base.get('step_cpu_time_median_s'):  # CPU: also by process CPU time
            out.update({f'{base_name}/{n} (CPU time)': r['step_cpu_time_median_s'] /
                        base['step_cpu_time_median_s'] for n, r in by_name.items()
                        if n != base_name and r.get('step_cpu_time_median_s')})
    return out


def fmt_bytes(n):
    return f'{n / 2 ** 30:.2f} GiB' if n >= 2 ** 30 else f'{n / 2 ** 20:.0f} MiB'


def main(argv=None):
    args = parse_args(argv)
    if args.summarize:
        results = []
        for path in args.summarize:
            with open(path) as f:
                results.append(json.load(f))
        text = A.markdown_summary(results)
        print(text)
        return text
    if not args.config:
        raise SystemExit('benchmark_pretrain.py: a CONFIG (or --summarize JSON...) is needed')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if device.type == 'cuda':
        torch.cuda.set_device(torch.device(device).index or 0)
    torch.manual_seed(args.seed)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    A.prepare_config(cfg, img_size=args.img_size, student_arch=args.student_arch,
                     teacher_arch=args.teacher_arch, num_teachers=args.num_teachers,
                     random_teachers=args.random_teachers)
    batch_sizes = args.batch_size or [cfg.train_dataloader.batch_size]
    if (args.shipped or args.loader) and not args.pipeline:
        raise SystemExit('benchmark_pretrain.py: --shipped / --loader need real images: '
                         '--pipeline IMAGE_OR_DIR ...')
    shipped = None
    if args.shipped:  # first: its runner builds the model the peers then share
        shipped, model = A.measure_shipped(cfg, A.list_images(args.pipeline), batch_sizes[0],
                                           device, iters=args.shipped_iters,
                                           warmup=args.warmup, step_iters=args.iters)
    else:
        model = A.build_model(cfg, device)
    size = A.input_size(model)
    teachers = model.target_generator.teachers
    peak = args.peak_tflops or A.default_peak_tflops(device)
    result = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        command=' '.join([osp.relpath(sys.argv[0]) if sys.argv else 'benchmark_pretrain.py',
                          *(argv if argv is not None else sys.argv[1:])]),
        config=args.config, device=str(device), hardware=A.device_info(device),
        peak_tflops=peak, img_size=list(size),
        student=dict(arch=str(cfg.model.backbone.arch)),
        teachers=[dict(name=t.name, blocks=t.backbone.num_layers, width=t.embed_dims,
                       patch=t.patch_size) for t in teachers],
        variants=[], ratios={})

    def save():  # after every section: a run cut short still leaves what it measured
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out + '.tmp', 'w') as f:
                json.dump(result, f, indent=1, default=str)
            os.replace(args.out + '.tmp', args.out)

    print(f'DMT benchmark on {device} ({result["hardware"].get("gpu") or result["hardware"]["cpu"]}'
          f', torch {torch.__version__}): {len(teachers)} teachers, input {size}',
          flush=True)

    flops = None
    if not args.no_flops:
        flops = A.dmt_flops(model, size, device)
        result['flops'] = flops
        save()
        t = ', '.join(f'{k} {v / 1e9:.2f}' for k, v in flops['teachers'].items())
        print(f'GFLOPs/image forward: student {flops["student"] / 1e9:.2f}, heads+losses '
              f'{flops["heads"] / 1e9:.2f}, teachers {t}; train step {flops["train"] / 1e9:.2f} '
              f'(3x student+heads, 1x teachers; fwd+bwd counted: '
              f'{(flops["train_counted"] or 0) / 1e9:.2f})', flush=True)

    if shipped is not None:
        result['shipped'] = shipped
        step = dict(variant='shipped', batch_size=shipped['batch_size'],
                    images_per_s=shipped['step_images_per_s'],
                    step_time_median_s=shipped['step_time_median_s'],
                    step_cpu_time_median_s=shipped['step_cpu_time_median_s'],
                    peak_memory=shipped['step_peak_memory'], notes=shipped['notes'],
                    settings=shipped['config_settings'], loss=shipped['loss'])
        if flops:
            step.update(achieved_tflops=flops['train'] * step['images_per_s'] / 1e12,
                        mfu=A.mfu(flops['train'], step['images_per_s'], peak))
            shipped['end_to_end_mfu'] = A.mfu(flops['train'],
                                              shipped['end_to_end_images_per_s'] or 0, peak)
        result['variants'].append(step)
        save()
        e2e = shipped['end_to_end_images_per_s']
        print(f'[shipped] as tools/train.py runs it ({shipped["config_settings"]["wrapper"]}, '
              f'dtype {shipped["config_settings"]["amp_dtype"]}, compile '
              f'{shipped["config_settings"]["compile"]}): end to end with the data loader '
              f'({shipped["config_settings"]["num_workers"]} workers) '
              f'{e2e or 0:.1f} images/s, data wait '
              f'{1000 * (shipped["data_wait_s_median"] or 0):.1f}'
              f' ms/iteration; model step {step["images_per_s"]:.1f} images/s'
              + (f', MFU {100 * step["mfu"]:.1f}%' if step.get('mfu') is not None else '')
              + (f'  [{"; ".join(shipped["notes"])}]' if shipped['notes'] else ''), flush=True)

    def loader_rate(config):
        return A.loader_throughput(config, A.list_images(args.pipeline),
                                   num_batches=args.loader_batches,
                                   batch_size=min(32, batch_sizes[0]))

    if args.loader:
        loader = loader_rate(cfg)
        result['loader'] = loader
        save()
        print(f'train dataloader, one worker: {loader["images_per_s_per_worker"]:.1f} images/s '
              f'wall, {loader["images_per_cpu_s"]:.1f} per worker CPU-second '
              f'({" -> ".join(loader["pipeline"])})', flush=True)
        if args.pipeline_reference:
            from dmt_mm.analysis.data_throughput import reference_pipeline, with_train_pipeline
            ref_cfg = with_train_pipeline(cfg, reference_pipeline(A.train_pipeline(cfg)))
            ref = loader_rate(ref_cfg)
            result['loader_reference'] = ref
            save()
            print(f'train dataloader, reference pipeline ({" -> ".join(ref["pipeline"])}): '
                  f'{ref["images_per_cpu_s"]:.1f} per worker CPU-second; after / before '
                  f'{loader["images_per_cpu_s"] / ref["images_per_cpu_s"]:.2f}x', flush=True)

    if args.pipeline:  # CPU only, a few seconds: first, so a run cut short still has it
        pipe = A.pipeline_throughput(A.train_pipeline(cfg), A.list_images(args.pipeline),
                                     args.pipeline_images)
        result['pipeline'] = pipe
        if args.pipeline_reference:
            from dmt_mm.analysis.data_throughput import reference_pipeline
            result['pipeline_reference'] = A.pipeline_throughput(
                reference_pipeline(A.train_pipeline(cfg)), A.list_images(args.pipeline),
                args.pipeline_images)
            ref = result['pipeline_reference']
            print(f'data pipeline, reference ({" -> ".join(ref["pipeline"])}): '
                  f'{ref["images_per_cpu_s"]:.1f} per CPU-second; after / before '
                  f'{pipe["images_per_cpu_s"] / ref["images_per_cpu_s"]:.2f}x', flush=True)
        save()
        stages = ', '.join(f'{k.split(":", 1)[1]} {v:.1f}' for k, v in pipe['stage_ms'].items())
        print(f'data pipeline, one worker: {pipe["images_per_s_per_worker"]:.1f} images/s wall, '
              f'{pipe["images_per_cpu_s"]:.1f} per CPU-second (ms/image: {stages})', flush=True)

    names = list(args.variants)
    names += [p for p in args.peer if p not in names]
    if args.ablate:
        names += [n for n in A.ABLATIONS if n not in names]
    compile_last = args.compile or 'optimized-compile' in names
    names = [n for n in names if n != 'optimized-compile']
    for name in names:
        run_one(name, model, cfg, device, batch_sizes, args, size, flops, peak, result)
        save()

    if args.parts:
        variant = A.resolve_variant('optimized', device)
        base = next((r for r in result['variants'] if r['variant'] == 'optimized'
                     and 'error' not in r), None)
        bs = base['batch_size'] if base else batch_sizes[-1]
        parts = A.measure_parts(model, cfg, variant, bs, device, rounds=args.parts_rounds,
                                size=size)
        result['parts'] = parts
        save()
        for clock in ('wall', 'cpu'):
            if clock not in parts:
                continue
            c = parts[clock]
            print(f'parts, {clock} time (median ms): ' + ', '.join(
                f'{k} {1000 * v:.1f}' for k, v in c['median_s'].items()) +
                f'; sum of parts {1000 * c["sum_of_parts_s"]:.1f} ms; overhead ratio '
                f'{c["overhead_ratio"]:.3f} (minima: {c["overhead_ratio_min"]:.3f}; target '
                '<= 1.10)', flush=True)

    if compile_last:  # last: compiled code stays cached in the process
        run_one('optimized-compile', model, cfg, device, batch_sizes, args, size, flops, peak,
                result)
        save()

    for name, ratio in result['ratios'].items():
        print(f'{name}: {ratio:.2f}x', flush=True)
    ok = [r['images_per_s'] for r in result['variants'] if 'error' not in r]
    if args.pipeline and ok:  # a worker with a core of its own: the CPU-time rate
        pipe['step_images_per_s'] = max(ok)
        pipe['workers_needed'] = A.workers_needed(max(ok), pipe['images_per_cpu_s'])
        print(f'data pipeline: the fastest step ({max(ok):.1f} images/s) needs '
              f'{pipe["workers_needed"]} dataloader workers per GPU (25% headroom)', flush=True)
        if args.loader:
            loader['workers_needed'] = A.workers_needed(max(ok), loader['images_per_cpu_s'])
            print(f'train dataloader: {loader["workers_needed"]} workers per GPU for '
                  f'{max(ok):.1f} images/s (25% headroom)', flush=True)

    # the benchmark path must run on mmcv-lite without mmdet / mmseg: say what got imported
    result['heavy_modules_loaded'] = sorted(
        m for m in ('mmdet', 'mmseg', 'mmcv._ext', 'mmcv.ops') if m in sys.modules)
    save()
    if args.out:
        print(f'results written to {args.out}')
    return result


if __name__ == '__main__':
    run_tool_main(main)
