"""Timing and memory of training steps: CUDA events on GPU, ``perf_counter`` plus process
CPU time on CPU; peak memory per variant; one variant timed with out-of-memory retries."""
import gc
import math
import resource
import statistics
import sys
import time
from typing import Dict, Sequence

import torch

from .model_setup import input_size, synthetic_batch
from .variants import build_variant_optim_wrapper, optim_wrapper_cfg, variant_context


def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak_memory(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return
    gc.collect()
    try:  # glibc keeps freed memory mapped: hand it back first, or the last variant's peak stays
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:  # Linux: reset the process's peak RSS (VmHWM) to the current RSS
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def peak_memory(device) -> Dict:
    if torch.device(device).type == 'cuda':
        return dict(kind='torch.cuda.max_memory_allocated',
                    bytes=int(torch.cuda.max_memory_allocated(device)),
                    reserved_bytes=int(torch.cuda.max_memory_reserved(device)))
    try:
        with open('/proc/self/status') as f:
            hwm = next(line for line in f if line.startswith('VmHWM'))
        return dict(kind='process peak RSS (VmHWM, reset per variant)',
                    bytes=int(hwm.split()[1]) * 1024)
    except (OSError, StopIteration):
        return dict(kind='process peak RSS (ru_maxrss, since start)',
                    bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def time_calls(fn, iters, warmup, device, after=None) -> Dict:
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls (CUDA events on GPU, perf_counter
    on CPU, plus the process CPU time there, which other processes on a shared machine do not
    inflate); ``after(result)`` runs after each call, outside the timed interval."""
    cuda = torch.device(device).type == 'cuda'
    for _ in range(warmup):
        out = fn()
        if after is not None:
            after(out)
    _sync(device)
    times, cpu_times = [], []
    start_wall = time.perf_counter()
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            if after is not None:
                after(out)
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            if after is not None:
                after(out)
    _sync(device)
    wall = time.perf_counter() - start_wall
    res = dict(median=statistics.median(times), mean=statistics.fmean(times),
               min=min(times), max=max(times), wall=wall, iters=iters, times=times)
    if cpu_times:
        res.update(cpu_median=statistics.median(cpu_times), cpu_times=cpu_times)
    return res


def read_log_vars(log_vars):
    """What the runner does with a step's outputs: read every value on the host."""
    return {k: v.item() if torch.is_tensor(v) else float(v) for k, v in log_vars.items()}


def _is_oom(exc):
    return isinstance(exc, torch.OutOfMemoryError) or 'out of memory' in str(exc).lower()


def cleanup(device):
    gc.collect()
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache()


def _time_variant(model, cfg, variant, batch_size, size, device, iters, warmup) -> Dict:
    """One variant at one batch size; its optimizer wrapper lives only in here."""
    data = synthetic_batch(batch_size, size, device)
    last = {}
    with variant_context(model, variant):
        ow = build_variant_optim_wrapper(model, cfg, variant, device)
        model.train()
        reset_peak_memory(device)
        timing = time_calls(lambda: model.train_step(data, ow), iters, warmup, device,
                            after=lambda log_vars: last.update(read_log_vars(log_vars)))
        memory = peak_memory(device)
    return dict(
        variant=variant['name'], settings={k: variant[k] for k in (
            'amp', 'optimizer', 'attention', 'teachers', 'compile', 'merge_groups')},
        optimizer_param_groups=len(ow.optimizer.param_groups),
        optim_wrapper=optim_wrapper_cfg(cfg, variant, device),
        notes=list(variant['notes']), batch_size=batch_size, img_size=list(size),
        step_time_median_s=timing['median'], step_time_mean_s=timing['mean'],
        step_time_min_s=timing['min'], step_time_max_s=timing['max'],
        step_cpu_time_median_s=timing.get('cpu_median'),
        images_per_s=batch_size / timing['median'],
        images_per_s_wall=batch_size * timing['iters'] / timing['wall'],
        peak_memory=memory, loss=last.get('loss'),
        losses_finite=all(math.isfinite(v) for v in last.values()),
        warmup=warmup, iters=iters)


def run_variant(model, cfg, variant, batch_sizes: Sequence[int], device, iters=20, warmup=5,
                size=None) -> Dict:
    """Time one variant; on CUDA out-of-memory retry with the next batch size."""
    size = size or input_size(model)
    last_error = None
    for batch_size in batch_sizes:
        try:
            result = _time_variant(model, cfg, variant, batch_size, size, device, iters, warmup)
            result['oom_batch_sizes'] = [b for b in batch_sizes if b > batch_size]
            return result
        except Exception as exc:  # noqa: BLE001 -- only OOM is retried
            if not _is_oom(exc):
                raise
            last_error = RuntimeError(str(exc))  # not exc: its traceback pins the activations
            print(f'[{variant["name"]}] batch {batch_size}: out of memory, trying a smaller '
                  'batch', file=sys.stderr, flush=True)
        finally:
            model.zero_grad(set_to_none=True)
            cleanup(device)
    raise RuntimeError(f'variant {variant["name"]}: out of memory at every batch size '
                       f'{list(batch_sizes)}; pass smaller --batch-size values') from last_error
