"""What ``tools/train.py`` and ``tools/test.py`` share: config merging and runner building.

One code path serves mmpretrain, mmdet and mmseg configs (the config's ``default_scope``
picks the registries). It also makes CPU-only distributed runs work with mmengine 0.10.x,
whose ``init_dist`` calls ``torch.cuda.set_device`` and whose DDP wrapper passes CUDA
``device_ids``: with no GPU we create the gloo process group ourselves before the Runner
exists (the Runner then skips ``init_dist``) and wrap with ``device_ids=None``.
"""
import os
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log


def default_work_dir(config_path):
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def load_config(config_path, cfg_options=None, launcher='none', work_dir=None):
    """Read a config, apply ``--cfg-options``, the launcher and the work dir."""
    if not osp.isfile(config_path):
        raise FileNotFoundError(f'config file {config_path!r} does not exist')
    cfg = Config.fromfile(config_path)
    if cfg_options:
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
        raise RuntimeError(f'launcher={cfg.launcher!r} without CUDA is not supported; on CPU use '
                           'tools/dist_train.sh (torchrun, launcher=pytorch)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    wrapper = ConfigDict(cfg.get('model_wrapper_cfg', None) or dict(type='MMDistributedDataParallel'))
    if wrapper.type == 'MMDistributedDataParallel':
        wrapper.type = 'SyncBNFallbackDDP'  # DDP refuses SyncBN layers on CPU
    wrapper.device_ids = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    print_log(f'CPU distributed run: gloo process group, rank {dist.get_rank()} of '
              f'{dist.get_world_size()}', logger='current')
    return cfg


def add_reliability_defaults(cfg):
    """Atomic signed checkpoints, the non-finite loss guard, checkpoint/model key check,
    empty-dataset check and, for distributed runs, the rank agreement check -- unless the
    config already chose otherwise (``nonfinite_loss_guard=False``,
    ``checkpoint_key_check=False``)."""
    from dmt_mm.engine import ATOMIC_BACKEND
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and checkpoint_hook.get('backend_args') is None:
        checkpoint_hook.backend_args = dict(backend=ATOMIC_BACKEND)
    hooks = list(cfg.get('custom_hooks', None) or [])
    present = {h.get('type') for h in hooks}
    if cfg.get('nonfinite_loss_guard', True) and 'NonFiniteLossGuardHook' not in present:
        hooks.append(dict(type='NonFiniteLossGuardHook'))
    if cfg.launcher != 'none' and 'RankConsistencyHook' not in present:
        hooks.append(dict(type='RankConsistencyHook'))
    if cfg.get('checkpoint_key_check', True) and 'CheckpointCompatibilityHook' not in present:
        hooks.append(dict(type='CheckpointCompatibilityHook'))
    if 'DatasetSanityHook' not in present:
        hooks.append(dict(type='DatasetSanityHook'))
    cfg.custom_hooks = hooks
    return cfg


def build_runner(cfg, data_fields=('train_dataloader', 'val_dataloader')):
    """Check data paths, add the reliability defaults and build the runner the config asks
    for (``runner_type``) or mmengine's Runner."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .preflight import check_data_paths
    check_data_paths(cfg, data_fields)
    cfg = setup_cpu_distributed(cfg)
    add_reliability_defaults(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def find_resume_checkpoint(work_dir):
    """The checkpoint ``--resume`` (no path) continues from: the one ``last_checkpoint``
    names if it is complete (signature verifies), else the newest complete one in the work
    dir; None when there is none. Partial files of an interrupted save are never chosen."""
    from dmt_mm.utils.safe_load import is_signed
    if not osp.isdir(work_dir):
        return None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isfile(named) and is_signed(named):
            return named
        print_log(f'last_checkpoint names {named!r}, which is missing or incomplete; '
                  'looking for the newest complete checkpoint instead', logger='current',
                  level=30)
    candidates = [osp.join(work_dir, f) for f in os.listdir(work_dir) if f.endswith('.pth')]
    candidates = sorted((c for c in candidates if is_signed(c)), key=osp.getmtime)
    return candidates[-1] if candidates else None


def set_local_rank_env(local_rank):
    """``torch.distributed.launch`` passes ``--local-rank``; torchrun sets ``LOCAL_RANK``."""
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
