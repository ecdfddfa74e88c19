"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, the defaults every
config gets (:mod:`.defaults`), runner building and the end of a distributed run.

One code path serves mmpretrain, mmdet and mmseg configs (the config's ``default_scope``
picks the registries). It also makes CPU-only distributed runs work with mmengine 0.10.x,
whose ``init_dist`` calls ``torch.cuda.set_device`` and whose DDP wrapper passes CUDA
``device_ids``: with no GPU we create the gloo process group ourselves before the Runner
exists (the Runner then skips ``init_dist``) and wrap with ``device_ids=None``.
"""
import difflib
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from dmt_mm.checkpoint import find_resume_checkpoint, remove_stale_partials, safe_torch_load
from dmt_mm.errors import ConfigError

from .defaults import (
    add_distributed_defaults,
    add_input_protections,
    add_runner_hooks,
    add_training_defaults,
    reliability_options,
    resolve_seed,
)
from .preflight import check_data_paths, check_lengths

# top-level keys mmengine's Runner (and this project's launcher) read besides the config's
RUNNER_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'train_cfg',
    'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'model_wrapper_cfg', 'compile',
    'sync_bn', 'find_unused_parameters', 'activation_checkpointing', 'efficient_conv_bn_eval',
    'runner_type', 'custom_imports', 'reliability'})


class FormattedOnceConfig(Config):
    """A Config that formats its text once per content.

    mmengine formats a run's config with yapf four times (the log, the dumped file, the
    visualizer's copy and the message hub) and once more per checkpoint; for a toy run that
    is a good part of its start-up. The text is the same each time unless the config changed
    in between, so the last one is kept, keyed by the content it was made from.
    """
    _last = (None, None)  # (key, text)

    @property
    def pretty_text(self):
        key = (self._format_python_code, repr(self.to_dict()))
        if FormattedOnceConfig._last[0] != key:
            FormattedOnceConfig._last = (key, super().pretty_text)
        return FormattedOnceConfig._last[1]


def default_work_dir(config_path):
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def check_option_keys(cfg, cfg_options):
    """A ``--cfg-options`` key must start with a key of the config or one the Runner reads:
    a misspelt one would otherwise add an unused key and the run would go on without it."""
    known = set(cfg.keys()) | RUNNER_KEYS
    for key in cfg_options:
        top = key.split('.')[0]
        if top not in known:
            close = difflib.get_close_matches(top, sorted(known), n=3)
            hint = f'did you mean {" or ".join(repr(c) for c in close)}? ' if close else ''
            raise ConfigError(
                f'--cfg-options {key}: the config has no key {top!r} and the runner reads '
                f'none; {hint}(its top-level keys: {", ".join(sorted(cfg.keys()))})')


def load_config(config_path, cfg_options=None, launcher='none', work_dir=None):
    """Read a config, check and apply ``--cfg-options``, the launcher and the work dir."""
    if not osp.isfile(config_path):
        raise FileNotFoundError(f'config file {config_path!r} does not exist')
    cfg = Config.fromfile(config_path)
    # Config.fromfile builds a plain Config; the Runner's deep copy keeps the class
    object.__setattr__(cfg, '__class__', FormattedOnceConfig)
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(config_path)
    return cfg


def setup_cpu_distributed(cfg):
    """Prepare a ``launcher='pytorch'`` run on a machine without CUDA (gloo, no device ids)."""
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return cfg
    if cfg.launcher != 'pytorch':
        raise ConfigError(f'launcher={cfg.launcher!r} without CUDA is not supported; on CPU '
                          'use tools/dist_train.sh (torchrun, launcher=pytorch)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = ConfigDict(cfg.get('model_wrapper_cfg', None) or dict(type='EquivalentDDP'))
    wrapper.device_ids = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    print_log(f'CPU distributed run: gloo process group, rank {dist.get_rank()} of '
              f'{dist.get_world_size()}', logger='current')
    return cfg


def resume_meta(cfg):
    """The ``meta`` of the checkpoint a resumed run starts from (None when not resuming)."""
    if not (cfg.get('resume') and cfg.get('load_from')):
        return None
    return (safe_torch_load(cfg.load_from, mmap=True).get('meta') or {})


def build_runner(cfg, data_fields=('train_dataloader', 'val_dataloader')):
    """Check the config, add the defaults every config gets and build the runner the config
    asks for (``runner_type``) or :class:`~dmt_mm.engine.runner.ReproducibleRunner`."""
    from mmengine.registry import RUNNERS

    from ..console import LibraryDeprecationFilter
    from .runner import ReproducibleRunner
    training = 'train_dataloader' in data_fields
    check_data_paths(cfg, data_fields)
    check_lengths(cfg, data_fields)
    opts = reliability_options(cfg)
    if training:
        stale = remove_stale_partials(cfg.work_dir)
        if stale:
            print_log(f'removed {len(stale)} temporary files of interrupted writes in '
                      f'{cfg.work_dir}: {stale[:4]}', logger='current', level=30)
        resolve_seed(cfg, resume_meta(cfg))
        add_training_defaults(cfg, opts)
    cfg = setup_cpu_distributed(cfg)
    add_distributed_defaults(cfg, opts)
    add_input_protections(cfg, opts, data_fields)
    add_runner_hooks(cfg, opts, distributed=cfg.launcher != 'none')
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else ReproducibleRunner.from_cfg(cfg)
    runner.logger.addFilter(LibraryDeprecationFilter())
    return runner


def choose_resume_checkpoint(cfg):
    """``--resume`` without a path, or ``resume = True`` in the config: the newest complete,
    finite checkpoint of the work dir (mmengine would trust ``last_checkpoint`` blindly)."""
    if not cfg.get('resume') or cfg.get('load_from'):
        return cfg
    cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    if cfg.load_from is None:
        print_log(f'resume: no complete checkpoint in {cfg.work_dir}; starting from scratch',
                  logger='current')
        cfg.resume = False
    return cfg


def finish_distributed():
    """End a distributed run cleanly: every rank waits for the others, then the process
    group is destroyed before the interpreter tears down (its threads would otherwise be
    destroyed while still running, which aborts the process: SIGABRT after a good run)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def set_local_rank_env(local_rank):
    """``torch.distributed.launch`` passes ``--local-rank``; torchrun sets ``LOCAL_RANK``."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
