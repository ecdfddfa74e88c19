"""The shipped config as ``tools/train.py`` runs it: its runner (launch defaults, optim wrapper,
AMP dtype, ``compile``), trained for a few iterations on real images through its own data
loader (end-to-end images/s), then its compiled ``train_step`` timed alone on a batch
already on the device (the model step), in the same process as the naive peer."""
import copy
import os
import statistics
import tempfile
import time
from typing import Dict, Sequence

import torch

from .data_throughput import imagenet_layout
from .model_setup import quiet_mmengine_log, synthetic_batch
from .timing import peak_memory, read_log_vars, reset_peak_memory, time_calls


def _iteration_clock(device):
    """A hook stamping the wall time at every ``before_train_iter`` and at the end (device
    synchronised first): consecutive stamps bound one iteration, data waiting included."""
    from mmengine.hooks import Hook

    class IterationClock(Hook):
        def __init__(self):
            self.device = torch.device(device)
            self.stamps = []

        def _stamp(self):
            if self.device.type == 'cuda':
                torch.cuda.synchronize(self.device)
            self.stamps.append(time.perf_counter())

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._stamp()

        def after_train(self, runner):
            self._stamp()

    return IterationClock()


def train_with_clock(cfg, device):
    """Build the runner of ``cfg`` and train it (mmengine's log quiet) under an iteration
    clock, peak memory counted from the start: (runner, clock, wall seconds of ``train()``,
    peak memory). The one way the benchmarks time a real training run."""
    from dmt_mm.engine.launch import build_runner
    with quiet_mmengine_log():
        runner = build_runner(cfg)
    clock = _iteration_clock(device)
    runner.register_hook(clock, priority='VERY_LOW')
    reset_peak_memory(device)
    t0 = time.perf_counter()
    with quiet_mmengine_log():
        runner.train()
    wall = time.perf_counter() - t0
    return runner, clock, wall, peak_memory(device)


def shipped_runner_config(cfg, image_paths: Sequence[str], data_root: str, work_dir: str,
                          batch_size: int, iters: int, device) -> Dict:
    """The config as tools/train.py loads it, for ``iters`` iterations (one epoch) over
    ``image_paths`` laid out as an ImageNet folder; no checkpoints, no resume. On a machine
    without CUDA, mmengine's AmpOptimWrapper cannot be built: the plain OptimWrapper runs
    instead (said in the notes)."""
    cfg = copy.deepcopy(cfg)
    notes = []
    imagenet_layout(image_paths, data_root, batch_size * iters)
    dataset = cfg.train_dataloader.dataset
    while 'data_root' not in dataset and dataset.get('dataset') is not None:
        dataset = dataset.dataset
    dataset.update(data_root=data_root + '/', split='train')
    dataset.pop('ann_file', None)
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = min(cfg.train_dataloader.get('num_workers', 0),
                                           os.cpu_count() or 1)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10 ** 6)
    cfg.resume, cfg.load_from, cfg.work_dir = False, None, work_dir
    cfg.launcher = 'none'
    cfg.pop('param_scheduler', None)  # warm-up from lr 0: irrelevant to speed
    if torch.device(device).type != 'cuda' and cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('dtype', None)
        cfg.optim_wrapper.pop('loss_scale', None)
        notes.append('AmpOptimWrapper needs CUDA: the plain OptimWrapper (fp32) here')
    return cfg, notes


def measure_shipped(cfg, image_paths: Sequence[str], batch_size: int, device, iters=10,
                    warmup=3, step_iters=10) -> Dict:
    """Train the config for ``warmup + iters`` iterations as tools/train.py does (same
    launch layer, runner, optim wrapper and compile setting) on real images, then time its
    compiled ``train_step`` alone on a synthetic device batch. Returns the end-to-end and
    model-step rates, the data loader's share, the settings and the runner's model (its
    ``train_step`` restored to the uncompiled method) for the peers that follow."""
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg, notes = shipped_runner_config(cfg, image_paths, os.path.join(tmp, 'data'),
                                               os.path.join(tmp, 'work'), batch_size,
                                               warmup + iters, device)
        runner, clock, total_s, e2e_memory = train_with_clock(run_cfg, device)
        first_s = clock.stamps[1] - clock.stamps[0] if len(clock.stamps) > 1 else None
        intervals = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])][warmup:]
        data_times = runner.message_hub.get_scalar('train/data_time').data[0]
        model, ow = runner.model, runner.optim_wrapper
        data = synthetic_batch(batch_size, tuple(run_cfg.model.backbone.get('img_size', 224)
                                                 for _ in range(2)), device)
        last = {}
        model.train()
        timing = time_calls(lambda: model.train_step(data, ow), step_iters, 2, device,
                            after=lambda log_vars: last.update(read_log_vars(log_vars)))
        step_memory = peak_memory(device)
        compiled = 'train_step' in model.__dict__
        model.__dict__.pop('train_step', None)  # the peers time the uncompiled method
        model.data_preprocessor.__dict__.pop('forward', None)  # kept eager by the runner
        model.zero_grad(set_to_none=True)
    e2e = statistics.median(intervals) if intervals else None
    return dict(
        config_settings=dict(optim_wrapper=run_cfg.optim_wrapper.to_dict(),
                             compile=run_cfg.get('compile'), compiled_train_step=compiled,
                             param_groups=len(ow.optimizer.param_groups),
                             wrapper=type(ow).__name__,
                             amp_dtype=str(getattr(ow, 'cast_dtype', None)),
                             loss_scaler_enabled=bool(getattr(
                                 getattr(ow, 'loss_scaler', None), 'is_enabled',
                                 lambda: False)()),
                             num_workers=run_cfg.train_dataloader.num_workers,
                             pipeline=[t['type'] for t in _pipeline(run_cfg)]),
        notes=notes, batch_size=batch_size, iters=len(intervals), warmup=warmup,
        end_to_end_images_per_s=batch_size / e2e if e2e else None,
        end_to_end_iter_s_median=e2e, first_iteration_s=first_s, train_wall_s=total_s,
        data_wait_s_median=statistics.median(data_times[warmup:]) if len(data_times) >
        warmup else None,
        end_to_end_peak_memory=e2e_memory,
        step_images_per_s=batch_size / timing['median'], step_time_median_s=timing['median'],
        step_cpu_time_median_s=timing.get('cpu_median'), step_peak_memory=step_memory,
        loss=last.get('loss')), model


def _pipeline(cfg):
    from .data_throughput import train_pipeline
    return train_pipeline(cfg)
