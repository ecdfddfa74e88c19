"""Test-only hooks, imported by test configs through custom_imports."""
import os
import os.path as osp
import signal
import time

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SlowDownHook(Hook):
    """Sleep after each iteration so a test can kill the process mid-run."""

    def __init__(self, seconds=0.3):
        self.seconds = seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        time.sleep(self.seconds)


@HOOKS.register_module()
class KillOnceHook(Hook):
    """SIGKILL this process in the middle of iteration ``at_iter`` (1-based, after the
    optimizer step, before the checkpoint hook) -- once per work dir, so the resumed run
    goes on."""
    priority = 'VERY_HIGH'

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        marker = osp.join(runner.work_dir, 'killed_once')
        if runner.iter + 1 == self.at_iter and not osp.exists(marker):
            open(marker, 'w').close()
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class PoisonWeightsHook(Hook):
    """Set every parameter to NaN before iteration ``at_iter`` (1-based)."""

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at_iter:
            with torch.no_grad():
                for param in runner.model.parameters():
                    param.fill_(float('nan'))


@HOOKS.register_module()
class RecordLossHook(Hook):
    """Write every rank's per-iteration loss values to work_dir/losses_rank<r>.json."""

    def __init__(self):
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.records.append({k: float(v) for k, v in outputs.items() if 'loss' in k})

    def after_train(self, runner):
        import json

        from mmengine.dist import get_rank
        with open(osp.join(runner.work_dir, f'losses_rank{get_rank()}.json'), 'w') as f:
            json.dump(self.records, f)
