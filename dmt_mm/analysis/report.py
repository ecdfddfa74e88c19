"""Hardware description, MFU and the Markdown table of benchmark results (BENCHMARKS.md)."""
import os
from typing import Dict, Optional, Sequence

import torch

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity), from the vendors' data sheets
PEAK_BF16_TFLOPS = (('H200', 989.0), ('H100 PCIe', 756.0), ('H100 NVL', 835.0), ('H100', 989.0),
                    ('GH200', 989.0), ('B200', 2250.0), ('A100', 312.0), ('L40S', 362.0),
                    ('A10G', 70.0), ('L4', 121.0))


def device_info(device) -> Dict:
    import platform
    info = dict(torch=torch.__version__, python=platform.python_version(),
                machine=platform.machine(), threads=torch.get_num_threads(),
                cpu_count=os.cpu_count())
    try:
        with open('/proc/cpuinfo') as f:
            info['cpu'] = next((line.split(':', 1)[1].strip() for line in f
                                if line.startswith('model name')), platform.processor())
    except OSError:
        info['cpu'] = platform.processor()
    if torch.device(device).type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda, capability=f'{props.major}.{props.minor}')
    return info


def default_peak_tflops(device) -> Optional[float]:
    """Dense bf16 peak of the detected GPU (None on CPU or an unknown GPU)."""
    if torch.device(device).type != 'cuda':
        return None
    name = torch.cuda.get_device_properties(device).name
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def mfu(train_flops_per_image, images_per_s, peak_tflops) -> Optional[float]:
    if not peak_tflops or not train_flops_per_image:
        return None
    return train_flops_per_image * images_per_s / (peak_tflops * 1e12)


def _worker_rate_line(what: str, rate: Dict) -> str:
    """One summary line of a one-worker data rate (the data pipeline alone, or the train
    dataloader as tools/train.py builds it): both are measured and reported the same way."""
    return (f'  - {what}: {rate["images_per_s_per_worker"]:.1f} images/s per worker (wall), '
            f'{rate["images_per_cpu_s"]:.1f} per CPU-second; workers per GPU needed: '
            f'{rate.get("workers_needed", "?")}')


def markdown_summary(results: Sequence[Dict]) -> str:
    """A Markdown table of benchmark JSON results (what BENCHMARKS.md shows)."""
    rows = ['| run | variant | batch | images/s | step ms (median) | step CPU ms | TFLOP/s | MFU |'
            ' peak memory | optimized / this |', '|---|---|---|---|---|---|---|---|---|---|']
    lines = []
    for res in results:
        hw = res.get('hardware', {})
        where = hw.get('gpu') or hw.get('cpu', '?')
        lines.append(f'- `{res.get("command", "?")}`: {where}, torch {hw.get("torch", "?")}, '
                     f'{res.get("date", "?")}; peak {res.get("peak_tflops")} TFLOP/s')
        base = next((v for v in res['variants'] if v['variant'] in ('optimized', 'shipped')
                     and 'error' not in v), None)
        for v in res['variants']:
            if 'error' in v:
                rows.append(f'| {res.get("date", "")[:10]} | {v["variant"]} | failed: '
                            f'{v["error"][:80]} ||||||||')
                continue
            mfu = '' if v.get('mfu') is None else f'{100 * v["mfu"]:.1f}%'
            tf = '' if v.get('achieved_tflops') is None else f'{v["achieved_tflops"]:.3g}'
            ratio = f'{base["images_per_s"] / v["images_per_s"]:.2f}x' if base else ''
            cpu = v.get('step_cpu_time_median_s')
            if cpu and base and base.get('step_cpu_time_median_s'):
                ratio += f' ({cpu / base["step_cpu_time_median_s"]:.2f}x CPU time)'
            cpu = f'{1000 * cpu:.1f}' if cpu else ''
            rows.append(f'| {res.get("date", "")[:10]} | {v["variant"]} | {v["batch_size"]} | '
                        f'{v["images_per_s"]:.1f} | {1000 * v["step_time_median_s"]:.1f} | {cpu} | '
                        f'{tf} | {mfu} | {v["peak_memory"]["bytes"] / 2 ** 30:.2f} GiB | {ratio} |')
        parts = res.get('parts')
        if parts:
            for clock in ('wall', 'cpu'):
                if clock in parts:
                    c = parts[clock]
                    lines.append(f'  - parts ({clock} time, batch {parts["batch_size"]}): ' +
                                 ', '.join(f'{k} {1000 * t:.1f} ms'
                                           for k, t in c['median_s'].items()) +
                                 f'; overhead ratio {c["overhead_ratio"]:.3f} (minima '
                                 f'{c["overhead_ratio_min"]:.3f})')
        shipped = res.get('shipped')
        if shipped:
            st = shipped['config_settings']
            e2e_mfu = shipped.get('end_to_end_mfu')
            lines.append(
                f'  - shipped config as tools/train.py runs it ({st["wrapper"]}, AMP dtype '
                f'{st["amp_dtype"]}, loss scaler {"on" if st["loss_scaler_enabled"] else "off"}, '
                f'compile {st["compile"]}, {st["param_groups"]} param groups): end to end with '
                f'the real data loader ({st["num_workers"]} workers, '
                f'{" -> ".join(st["pipeline"])}) {shipped["end_to_end_images_per_s"] or 0:.1f} '
                f'images/s' + (f' (MFU {100 * e2e_mfu:.1f}%)' if e2e_mfu else '') +
                f', data wait {1000 * (shipped["data_wait_s_median"] or 0):.1f} ms/iteration; '
                f'model step {shipped["step_images_per_s"]:.1f} images/s; first iteration '
                f'(compilation) {shipped["first_iteration_s"] or 0:.1f} s')
        loader = res.get('loader')
        if loader:
            lines.append(_worker_rate_line(
                f'train dataloader, one worker ({" -> ".join(loader["pipeline"])})', loader))
        if res.get('pipeline'):
            lines.append(_worker_rate_line('data pipeline', res['pipeline']))
        flops = res.get('flops')
        if flops:
            lines.append(f'  - GFLOPs/image: train {flops["train"] / 1e9:.2f} (student '
                         f'{flops["student"] / 1e9:.2f}, heads {flops["heads"] / 1e9:.2f}, '
                         f'teachers {flops["teachers_total"] / 1e9:.2f}); counted fwd+bwd '
                         f'{(flops.get("train_counted") or 0) / 1e9:.2f}')
    return '\n'.join(rows + [''] + lines) + '\n'
