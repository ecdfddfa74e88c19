"""Throughput of DMT pretraining steps, side by side with a naive peer (docs/performance.md).

What is timed is ``model.train_step(batch, optim_wrapper)`` -- data preprocessor, student,
K frozen teachers, heads, losses, backward and the optimizer step through the config's
optim wrapper -- on a batch already on the device, followed by reading the logged loss
values as the runner does (one host sync per step). Warm-up steps are excluded; GPU steps
are timed with CUDA events, CPU steps with ``perf_counter``.

Step variants (:data:`VARIANTS`) change one thing at a time on the same model:

* ``amp``: ``'config'`` (the config's optim wrapper), ``'bf16'`` (bf16 autocast, no loss
  scaler: bf16 has the fp32 exponent range), ``None`` (fp32);
* ``optimizer``: ``'fused'`` / ``'foreach'`` / ``'forloop'`` AdamW implementation,
  ``'default'`` (no flag: torch picks foreach on CUDA), ``'config'``;
* ``attention``: ``'auto'`` (``F.scaled_dot_product_attention`` picks flash / efficient /
  the CPU flash kernel) or ``'math'`` (the unfused reference: Q K^T, softmax, A V);
* ``teachers``: ``'frozen'`` (as the model runs them: ``no_grad``, bf16 autocast on CUDA),
  ``'fp32'`` (``no_grad``, fp32), ``'naive'`` (fp32, autograd on: parameters require grad,
  no ``no_grad``; they are not in the optimizer, but the loss backpropagates into them as
  in a straightforward implementation that forgets to freeze them);
* ``compile``: ``torch.compile`` of the student and teacher ``forward_tokens`` and of the
  heads;
* ``merge_groups``: merge the optimizer's param groups that share every setting (mmengine's
  constructor makes one group per tensor once ``paramwise_cfg`` is set, so a fused / foreach
  AdamW launches its kernels once per tensor).

AMP and fused kernels that need CUDA fall back to fp32 / what the CPU has; every result
records the settings actually used.
"""
import copy
import gc
import logging
import math
import os
import resource
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from typing import Dict, List, Optional, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

VARIANTS = {
    'config': dict(amp='config', optimizer='config', attention='auto', teachers='frozen'),
    'optimized': dict(amp='bf16', optimizer='fused', attention='auto', teachers='frozen'),
    'optimized-compile': dict(amp='bf16', optimizer='fused', attention='auto',
                              teachers='frozen', compile=True),
    # a candidate: one AdamW param group per distinct setting instead of one per tensor
    'optimized-merged-groups': dict(amp='bf16', optimizer='fused', attention='auto',
                                    teachers='frozen', merge_groups=True),
    # ablations: the optimized step minus one optimisation
    'optimized-foreach-adamw': dict(amp='bf16', optimizer='foreach', attention='auto',
                                    teachers='frozen'),
    'optimized-math-attention': dict(amp='bf16', optimizer='fused', attention='math',
                                     teachers='frozen'),
    'optimized-fp32-teachers': dict(amp='bf16', optimizer='fused', attention='auto',
                                    teachers='fp32'),
    'optimized-fp32': dict(amp=None, optimizer='fused', attention='auto', teachers='fp32'),
    # peers
    'naive-nograd': dict(amp=None, optimizer='default', attention='math', teachers='fp32'),
    'naive': dict(amp=None, optimizer='default', attention='math', teachers='naive'),
}
ABLATIONS = ('optimized-foreach-adamw', 'optimized-math-attention', 'optimized-fp32-teachers',
             'optimized-fp32')
PEERS = ('naive', 'naive-nograd')

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity), from the vendors' data sheets
PEAK_BF16_TFLOPS = (('H200', 989.0), ('H100 PCIe', 756.0), ('H100 NVL', 835.0), ('H100', 989.0),
                    ('GH200', 989.0), ('B200', 2250.0), ('A100', 312.0), ('L40S', 362.0),
                    ('A10G', 70.0), ('L4', 121.0))


# ---------------------------------------------------------------------------- config
def prepare_config(cfg, *, batch_size=None, img_size=None, student_arch=None, teacher_arch=None,
                   num_teachers=None, random_teachers=False):
    """Apply the benchmark's overrides to a DMT config (in place) and return it."""
    model = cfg.model
    if model.get('type') != 'DMT':
        raise ValueError(f'benchmark_pretrain needs a DMT pretraining config (model.type=DMT), '
                         f'got model.type={model.get("type")!r}; for other configs use '
                         'tools/analysis_tools/get_flops.py')
    teachers = [dict(t) for t in model.teachers]
    if num_teachers is not None:
        if num_teachers < 1:
            raise ValueError(f'--num-teachers must be >= 1, got {num_teachers}')
        if num_teachers > len(teachers) and not random_teachers:
            raise ValueError(f'--num-teachers {num_teachers} exceeds the config\'s {len(teachers)} '
                             'teachers: extra copies have no checkpoint; add --random-teachers')
        base = teachers
        teachers = []
        for k in range(num_teachers):
            t = copy.deepcopy(base[k % len(base)])
            if k >= len(base):
                t['name'] = f'{t.get("name", "teacher")}_{k}'
            teachers.append(t)
    if random_teachers:
        for t in teachers:
            t['checkpoint'] = None
        model.teacher_checkpoints = {}
        model.allow_random_teachers = True
    for t in teachers:
        bb = dict(t.get('backbone', {}))
        if teacher_arch is not None:
            bb['arch'] = teacher_arch
        if img_size is not None and t.get('img_size') is None:
            bb['img_size'] = img_size
        t['backbone'] = bb
    model.teachers = teachers
    if student_arch is not None:
        model.backbone.arch = student_arch
    if img_size is not None:
        model.backbone.img_size = img_size
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    return cfg


def import_config_modules(cfg):
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    imports = cfg.get('custom_imports', None)
    if imports:
        import_modules_from_strings(**imports)
    import dmt_mm.models  # noqa: F401  (the benchmark itself needs the DMT registrations)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))


def build_model(cfg, device):
    from mmpretrain.registry import MODELS
    import_config_modules(cfg)
    with quiet_mmengine_log():  # init_weights logs every tensor
        model = MODELS.build(cfg.model)
        model.init_weights()
    return model.to(device)


@contextmanager
def quiet_mmengine_log(level=logging.WARNING):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def input_size(model):
    patch = model.backbone.patch_embed.projection.kernel_size
    grid = model.backbone.patch_resolution
    return (grid[0] * patch[0], grid[1] * patch[1])


def synthetic_batch(batch_size, size, device, seed=0):
    """A collated batch as the DMT pipeline yields it (uint8 images, no labels), on device."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (batch_size, 3, *size), generator=gen, dtype=torch.uint8)
    return dict(inputs=imgs.to(device), data_samples=[DataSample() for _ in range(batch_size)])


# ---------------------------------------------------------------------------- variants
def resolve_variant(name_or_dict, device) -> Dict:
    """Settings of a variant, with what the device cannot do turned off (and said so)."""
    v = dict(VARIANTS[name_or_dict]) if isinstance(name_or_dict, str) else dict(name_or_dict)
    v.setdefault('compile', False)
    v.setdefault('merge_groups', False)
    v['name'] = name_or_dict if isinstance(name_or_dict, str) else v.get('name', 'custom')
    notes = []
    cuda = torch.device(device).type == 'cuda'
    if v['amp'] == 'bf16' and not cuda:
        v['amp'], _ = None, notes.append('bf16 AMP needs CUDA here: fp32')
    if v['teachers'] == 'frozen' and not cuda:
        notes.append('teachers run fp32 on CPU (their bf16 autocast is CUDA-only)')
    v['notes'] = notes
    return v


def build_variant_optim_wrapper(model, cfg, variant, device):
    from mmengine.optim import build_optim_wrapper
    with quiet_mmengine_log():  # the constructor logs every parameter's options
        ow = build_optim_wrapper(model, optim_wrapper_cfg(cfg, variant, device))
    if variant.get('merge_groups'):
        ow.optimizer = merge_param_groups(ow.optimizer)
    return ow


def merge_param_groups(optimizer):
    """The same optimizer with one param group per distinct set of group settings."""
    merged = {}
    for group in optimizer.param_groups:
        key = repr(sorted((k, v) for k, v in group.items() if k != 'params'))
        merged.setdefault(key, dict(group, params=[]))['params'].extend(group['params'])
    return type(optimizer)(list(merged.values()))


def optim_wrapper_cfg(cfg, variant, device):
    """The config's optim wrapper with the variant's AMP and AdamW implementation."""
    ow = copy.deepcopy(cfg.optim_wrapper.to_dict() if hasattr(cfg.optim_wrapper, 'to_dict')
                       else dict(cfg.optim_wrapper))
    cuda = torch.device(device).type == 'cuda'
    notes = variant['notes']
    amp = variant['amp']
    if amp == 'config' and ow.get('type') == 'AmpOptimWrapper' and not cuda:
        amp, note = None, 'config AmpOptimWrapper needs CUDA: fp32 OptimWrapper'
        if note not in notes:
            notes.append(note)
    if amp is None:
        ow['type'] = 'OptimWrapper'
        ow.pop('loss_scale', None)
        ow.pop('dtype', None)
    elif amp == 'bf16':
        ow.update(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
    opt = ow['optimizer']
    impl = variant['optimizer']
    if impl != 'config':
        opt.pop('fused', None)
        opt.pop('foreach', None)
        if impl == 'fused':
            opt['fused'] = True
        elif impl == 'foreach':
            opt['foreach'] = True
        elif impl == 'forloop':
            opt['foreach'] = False
        elif impl != 'default':
            raise ValueError(f'unknown optimizer implementation {impl!r}')
    return ow


@contextmanager
def _autocast_disabled():
    """Within it, every ``torch.autocast(...)`` is created disabled (the teachers' own bf16
    autocast included), so the code inside runs in fp32."""
    original = torch.autocast

    class _Disabled(original):
        def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
            super().__init__(device_type, dtype=dtype, enabled=False, cache_enabled=cache_enabled)

    torch.autocast = _Disabled
    try:
        yield
    finally:
        torch.autocast = original


def _teacher_forward(teacher, mode):
    cls_forward = type(teacher).forward
    fn = getattr(cls_forward, '__wrapped__', cls_forward) if mode == 'naive' else cls_forward

    def forward(inputs):
        with _autocast_disabled():
            return fn(teacher, inputs)
    return forward


def make_compilable(module):
    """mmpretrain gives every block's mmcv ``DropPath`` a numpy float (``np.linspace``);
    torch.compile traces numpy scalars as tensors, so ``if drop_prob == 0.`` becomes a
    data-dependent branch: a graph break in every block, then the recompile limit and eager
    fallback. A Python float of the same value compiles into one graph."""
    for m in module.modules():
        if type(getattr(m, 'drop_prob', None)).__module__ == 'numpy':
            m.drop_prob = float(m.drop_prob)


@contextmanager
def variant_context(model, variant):
    """Apply a variant's teacher mode, attention backend and compilation; undo on exit."""
    teachers = list(model.teachers)
    mode = variant['teachers']
    compiled = []
    with ExitStack() as stack:
        if variant['attention'] == 'math':
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        try:
            if mode in ('fp32', 'naive'):
                for t in teachers:
                    t.forward = _teacher_forward(t, mode)
                    if mode == 'naive':
                        t.backbone.requires_grad_(True)
            elif mode != 'frozen':
                raise ValueError(f'unknown teacher mode {mode!r}')
            if variant.get('compile'):
                for vit in [model.backbone] + [t.backbone for t in teachers]:
                    make_compilable(vit)
                    # dynamic=False: the student and the teachers share forward_tokens'
                    # code with other shapes; automatic dynamic shapes would then compile
                    # shape-generic (slower) kernels instead of one graph per shape
                    vit.forward_tokens = torch.compile(vit.forward_tokens, dynamic=False)
                    compiled.append(vit)
                for heads in ('tfd_heads', 'sfd_adaptors'):
                    for head in getattr(model, heads, {}).values():
                        head.compile(dynamic=False)
            yield
        finally:
            for t in teachers:
                t.__dict__.pop('forward', None)
                t.backbone.requires_grad_(False)
                t.backbone.zero_grad(set_to_none=True)
            for vit in compiled:
                vit.__dict__.pop('forward_tokens', None)
            for heads in ('tfd_heads', 'sfd_adaptors'):
                for head in getattr(model, heads, {}).values():
                    head._compiled_call_impl = None


# ---------------------------------------------------------------------------- timing
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


def _read_log_vars(log_vars):
    """What the runner does with a step's outputs: read every value on the host."""
    return {k: v.item() if torch.is_tensor(v) else float(v) for k, v in log_vars.items()}


def _is_oom(exc):
    return isinstance(exc, torch.OutOfMemoryError) or 'out of memory' in str(exc).lower()


def _cleanup(device):
    gc.collect()
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache()


def run_variant(model, cfg, variant, batch_sizes: Sequence[int], device, iters=20, warmup=5,
                size=None) -> Dict:
    """Time one variant; on CUDA out-of-memory retry with the next batch size."""
    size = size or input_size(model)
    last_error = None
    for batch_size in batch_sizes:
        ow = None
        try:
            data = synthetic_batch(batch_size, size, device)
            with variant_context(model, variant):
                ow = build_variant_optim_wrapper(model, cfg, variant, device)
                model.train()
                reset_peak_memory(device)
                last = {}

                def step():
                    return model.train_step(data, ow)

                def after(log_vars):
                    last.update(_read_log_vars(log_vars))
                timing = time_calls(step, iters, warmup, device, after)
                memory = peak_memory(device)
            finite = all(math.isfinite(v) for v in last.values())
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
                peak_memory=memory, loss=last.get('loss'), losses_finite=finite,
                warmup=warmup, iters=iters, oom_batch_sizes=[b for b in batch_sizes
                                                             if b > batch_size])
        except Exception as exc:  # noqa: BLE001 -- only OOM is retried
            if not _is_oom(exc):
                raise
            last_error = RuntimeError(str(exc))  # not exc: its traceback pins the activations
            print(f'[{variant["name"]}] batch {batch_size}: out of memory, trying a smaller '
                  'batch', file=sys.stderr, flush=True)
        finally:
            del ow
            model.zero_grad(set_to_none=True)
            _cleanup(device)
    raise RuntimeError(f'variant {variant["name"]}: out of memory at every batch size '
                       f'{list(batch_sizes)}; pass smaller --batch-size values') from last_error


# ---------------------------------------------------------------------------- parts
def measure_parts(model, cfg, variant, batch_size, device, rounds=5, warmup=2, size=None) -> Dict:
    """The full step versus the sum of its parts, each timed alone on the same batch:
    data preprocessor, teacher targets (K teachers + target norms), student forward +
    backward (backward from fixed output gradients), heads + losses forward + backward (on
    cached student features and targets), optimizer step. Parts are interleaved with the
    full step round by round, so load changes on a shared machine hit both alike.
    Returns, for wall time (and on CPU also process CPU time), medians, minima and
    ``overhead_ratio`` = median full step / sum of the parts' medians (``overhead_ratio_min``:
    the same with minima, the least noisy estimate on a busy machine)."""
    size = size or input_size(model)
    data = synthetic_batch(batch_size, size, device)
    with variant_context(model, variant):
        ow = build_variant_optim_wrapper(model, cfg, variant, device)
        model.train()

        def full():
            return model.train_step(data, ow)

        # one real step tells which parameters receive gradients
        ow.zero_grad()
        with ow.optim_context(model):
            inputs = model.data_preprocessor(data, True)['inputs']
            x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
            loss, _ = model.parse_losses(model.loss(x))
        ow.backward(loss)
        used = [p for p in model.parameters() if p.grad is not None]
        ow.zero_grad()
        del loss
        # what the parts consume: student outputs (as leaves) and teacher targets
        with ow.optim_context(model):
            feats = model.student_features(x)
            targets = model.teacher_targets(x, feats['grid'])
        keys = sorted(feats['layers'])
        grads = [torch.randn_like(t) * 1e-3 for t in [feats['seq']] +
                 [feats['layers'][i] for i in keys]]
        cached = dict(feats, seq=feats['seq'].detach().requires_grad_(),
                      layers={i: t.detach().requires_grad_() for i, t in feats['layers'].items()})
        del feats

        def preprocess():
            return model.data_preprocessor(data, True)

        def teachers():
            with ow.optim_context(model):
                return model.teacher_targets(x, cached['grid'])

        def student():
            with ow.optim_context(model):
                f = model.student_features(x)
            torch.autograd.backward([f['seq']] + [f['layers'][i] for i in keys], grads)

        def heads():
            model.student_features = lambda _x: cached
            model.teacher_targets = lambda _x, _grid: targets
            try:
                with ow.optim_context(model):
                    losses = model.loss(x)
                loss, _ = model.parse_losses(losses)
                ow.backward(loss)
            finally:
                del model.student_features, model.teacher_targets

        def fill_grads():  # the optimizer step alone needs the gradients a step leaves
            ow.zero_grad()
            ow.backward(sum((p * 0).sum() for p in used))

        def optimizer():
            ow.step()
            ow.zero_grad()

        parts = dict(preprocess=preprocess, teachers=teachers, student=student, heads=heads,
                     optimizer=optimizer)
        times = {k: [] for k in ['full', *parts]}
        cpu_times = {k: [] for k in times}
        for r in range(rounds + warmup):
            for name in times:
                if name == 'optimizer':
                    fill_grads()
                if name == 'full':
                    t = time_calls(full, 1, 0, device, after=_read_log_vars)
                else:
                    t = time_calls(parts[name], 1, 0, device)
                ow.zero_grad()
                cached['seq'].grad = None
                for leaf in cached['layers'].values():
                    leaf.grad = None
                if r >= warmup:
                    times[name].append(t['median'])
                    if 'cpu_median' in t:
                        cpu_times[name].append(t['cpu_median'])
        del ow
    model.zero_grad(set_to_none=True)
    _cleanup(device)

    def summary(samples):
        med = {k: statistics.median(v) for k, v in samples.items()}
        low = {k: min(v) for k, v in samples.items()}
        total = sum(v for k, v in med.items() if k != 'full')
        total_min = sum(v for k, v in low.items() if k != 'full')
        return dict(median_s=med, min_s=low, sum_of_parts_s=total,
                    overhead_ratio=med['full'] / total,
                    overhead_ratio_min=low['full'] / total_min, samples_s=samples)

    out = dict(variant=variant['name'], batch_size=batch_size, img_size=list(size),
               rounds=rounds, wall=summary(times))
    if all(cpu_times.values()):
        out['cpu'] = summary(cpu_times)
    return out


# ---------------------------------------------------------------------------- data pipeline
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


# ---------------------------------------------------------------------------- hardware
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


__all__ = ['VARIANTS', 'ABLATIONS', 'PEERS', 'prepare_config', 'build_model', 'input_size',
           'synthetic_batch', 'resolve_variant', 'optim_wrapper_cfg', 'variant_context',
           'build_variant_optim_wrapper', 'merge_param_groups',
           'make_compilable',
           'time_calls', 'run_variant', 'measure_parts', 'pipeline_throughput', 'train_pipeline',
           'workers_needed', 'device_info', 'default_peak_tflops', 'mfu', 'list_images',
           'markdown_summary']


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
        base = next((v for v in res['variants'] if v['variant'] == 'optimized'
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
        pipe = res.get('pipeline')
        if pipe:
            lines.append(f'  - data pipeline: {pipe["images_per_s_per_worker"]:.1f} images/s per '
                         f'worker (wall), {pipe["images_per_cpu_s"]:.1f} per CPU-second; workers '
                         f'per GPU needed: {pipe.get("workers_needed", "?")}')
        flops = res.get('flops')
        if flops:
            lines.append(f'  - GFLOPs/image: train {flops["train"] / 1e9:.2f} (student '
                         f'{flops["student"] / 1e9:.2f}, heads {flops["heads"] / 1e9:.2f}, '
                         f'teachers {flops["teachers_total"] / 1e9:.2f}); counted fwd+bwd '
                         f'{(flops.get("train_counted") or 0) / 1e9:.2f}')
    return '\n'.join(rows + [''] + lines) + '\n'
