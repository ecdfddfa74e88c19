"""Runner hooks for long multi-GPU runs: rank agreement, the non-finite guard, the
checkpoint / model key check and the empty-dataset check."""
import json
import os.path as osp

import torch
from mmengine.dist import all_gather, get_rank, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from dmt_mm.checkpoint import find_resume_checkpoint, nonfinite_tensors
from dmt_mm.errors import DataError, UserError

from .runner import bare_model


def parameter_fingerprint(model):
    """(sum, sum of squares, count) over all parameters, in float64: equal on ranks whose
    weights are equal, and different after any realistic divergence."""
    total = torch.zeros(3, dtype=torch.float64)
    for param in model.parameters():
        data = param.detach().double().cpu()
        total += torch.stack([data.sum(), (data * data).sum(), torch.tensor(data.numel(),
                                                                            dtype=torch.float64)])
    return total


@HOOKS.register_module()
class RankConsistencyHook(Hook):
    """After training, check that every rank holds the same weights (DDP kept them in
    sync) and write ``rank_consistency.json`` to the work dir; raise if they differ."""
    priority = 'VERY_LOW'

    def __init__(self, rtol=0.0, atol=0.0):
        self.rtol, self.atol = rtol, atol

    def after_train(self, runner):
        model = bare_model(runner.model)
        fingerprints = [f.tolist() for f in all_gather(parameter_fingerprint(model))]
        agree = all(torch.allclose(torch.tensor(f), torch.tensor(fingerprints[0]),
                                   rtol=self.rtol, atol=self.atol) for f in fingerprints)
        if is_main_process():
            with open(osp.join(runner.work_dir, 'rank_consistency.json'), 'w') as f:
                json.dump(dict(world_size=get_world_size(), agree=agree,
                               fingerprints=fingerprints), f)
        if not agree:
            raise RuntimeError(f'rank {get_rank()}: ranks ended with different weights: '
                               f'{fingerprints}')
        runner.logger.info(f'all {get_world_size()} ranks hold identical weights')


class NonFiniteError(UserError, FloatingPointError):
    """Training produced NaN / Inf values."""


def _floating_state(runner):
    """(name, tensor) of every floating-point value training changes: the model's
    parameters and buffers and the optimizer state."""
    model = bare_model(runner.model)
    named = [(f'model.{n}', t) for n, t in model.named_parameters()]
    named += [(f'model.{n}', t) for n, t in model.named_buffers()]
    optimizers = [runner.optim_wrapper.optimizer] if hasattr(runner.optim_wrapper, 'optimizer') \
        else [w.optimizer for w in runner.optim_wrapper.values()]
    names = {id(p): n for n, p in model.named_parameters()}
    for optimizer in optimizers:
        for param, state in optimizer.state.items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    named.append((f'optimizer.{names.get(id(param), "?")}.{key}', value))
    return [(n, t) for n, t in named if t.is_floating_point() and t.numel()]


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Stop training at the first NaN / Inf -- in a loss term, or in a weight, buffer or
    optimizer state after the step (a huge but finite loss can produce those) -- and
    refuse to write a checkpoint holding any, so every checkpoint of a run is finite.

    Runs before the checkpoint hook of the same iteration. Costs one max-abs reduction
    over the weights and optimizer state and one host sync per iteration.
    """
    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        bad = [name for name, value in (outputs or {}).items() if 'loss' in name
               and torch.is_tensor(value) and not torch.isfinite(value).all()]
        if bad:
            values = {name: float(outputs[name].detach().float().mean()) for name in bad}
            self._stop(runner, f'non-finite loss at iteration {runner.iter + 1}: {values}')
        state = _floating_state(runner)
        by_device = {}
        for _, tensor in state:
            by_device.setdefault(tensor.device, []).append(tensor.detach())
        finite = all(bool(torch.isfinite(torch.stack(torch._foreach_norm(ts, ord=float('inf'))))
                          .all()) for ts in by_device.values())
        if not finite:
            names = [n for n, t in state if not torch.isfinite(t).all()]
            self._stop(runner, f'non-finite values after the optimizer step of iteration '
                       f'{runner.iter + 1} in {len(names)} tensors (e.g. {names[:4]})')

    def before_save_checkpoint(self, runner, checkpoint):
        bad = nonfinite_tensors({k: v for k, v in checkpoint.items() if k != 'meta'})
        if bad:
            raise NonFiniteError(
                f'refusing to write a checkpoint holding NaN/Inf in {len(bad)} tensors (e.g. '
                f'{bad[:4]}); {self._newest_good(runner)}')

    @staticmethod
    def _newest_good(runner):
        newest = find_resume_checkpoint(runner.work_dir)
        if newest is None:
            return 'no checkpoint has been written yet, so there is nothing to resume from'
        return (f'the newest good checkpoint, {newest}, is kept: continue from it with '
                '--resume (after lowering the lr)')

    def _stop(self, runner, what):
        raise NonFiniteError(
            f'{what}. Training stopped before anything of this step was saved; '
            f'{self._newest_good(runner)}. Lower the lr, enable gradient clipping '
            '(optim_wrapper.clip_grad=dict(max_norm=...)), or check the data / teacher '
            'features of the term.')


class CheckpointMismatchError(UserError, RuntimeError):
    """The checkpoint was written for another model."""


@HOOKS.register_module()
class CheckpointCompatibilityHook(Hook):
    """Refuse to resume or test from a checkpoint that does not fit the model.

    mmengine loads runner checkpoints with ``strict=False`` and only logs mismatches, so a
    checkpoint of another config silently leaves layers at their initial values. Keys the
    model does not save (frozen teachers) are not expected.
    """
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('state_dict', checkpoint)
        model = bare_model(runner.model)
        if hasattr(model, 'upgrade_state_dict'):  # older layouts the model still loads
            model.upgrade_state_dict(state)
        expected = model.state_dict()
        strip = [k[len('module.'):] if k.startswith('module.') else k for k in state]
        state_shapes = {k: tuple(v.shape) for k, v in zip(strip, state.values())
                        if hasattr(v, 'shape')}
        missing = sorted(set(expected) - set(state_shapes))
        unexpected = sorted(set(state_shapes) - set(expected))
        wrong_shape = sorted(k for k in set(expected) & set(state_shapes)
                             if tuple(expected[k].shape) != state_shapes[k])
        if missing or unexpected or wrong_shape:
            def show(keys):
                return f'{len(keys)} (e.g. {keys[:4]})' if keys else '0'
            raise CheckpointMismatchError(
                f'the checkpoint does not match the model of this config: missing keys '
                f'{show(missing)}, unexpected keys {show(unexpected)}, wrong shapes '
                f'{show(wrong_shape)}. Resume / test only with checkpoints written by the same '
                'config; to start from pretrained weights use the backbone\'s '
                "init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.') "
                '(tools/model_converters/extract_student.py makes such files).')


@HOOKS.register_module()
class DatasetSanityHook(Hook):
    """Fail with the dataset's location when a split to be used is empty."""
    priority = 'VERY_HIGH'

    def before_train(self, runner):
        self._check(runner.train_dataloader, 'train_dataloader')

    def before_val(self, runner):
        self._check(runner.val_dataloader, 'val_dataloader')

    def before_test(self, runner):
        self._check(runner.test_dataloader, 'test_dataloader')

    @staticmethod
    def _check(dataloader, field):
        dataset = dataloader.dataset
        if len(dataset) == 0:
            inner = getattr(dataset, 'dataset', dataset)
            where = {k: getattr(inner, k, None) for k in ('data_root', 'ann_file', 'data_prefix')}
            raise DataError(f'{field}: the dataset {type(inner).__name__} has no samples '
                             f'({where}). Check that the images and annotations are at these '
                             'paths and that filter_cfg does not drop every sample.')
