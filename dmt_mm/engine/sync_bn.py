"""Data-parallel training that follows the 1-process trajectory: SyncBN on any device, and
per-sample random draws.

SyncBN (mmseg's UperNet/FCN heads and Feature2Pyramid neck; and every BN layer of a
distributed run, which ``tools/train.py`` converts with ``sync_bn='torch'``) cannot run
everywhere torch's ``SyncBatchNorm`` can be built:

* ``launcher='none'`` (one process, no process group): mmengine's Runner already swaps
  SyncBN for BN (it logs "Distributed training is not used ..."); nothing to do.
* a process group on CPU (``tools/dist_train.sh`` with gloo): torch's SyncBN has no CPU
  kernels and DDP refuses it (``SyncBatchNorm layers only work with GPU modules``).
  :class:`EquivalentDDP` converts it to :class:`CPUSyncBatchNorm`, which synchronises the
  batch statistics over the process group with gloo all-reduces (one process: plain BN).
* a model built outside the Runner (a script, ``mmseg.apis.init_model``) and trained
  without a process group on an older torch: ``Default process group has not been
  initialized``. Call :func:`convert_sync_bn_if_needed` on it.

The conversions move the same parameter and buffer tensors into the new layers, so
optimizers built earlier and every checkpoint stay valid (the state dicts are identical).
On GPUs torch's SyncBN stays.
"""
import contextlib

import torch
import torch.distributed as dist
from mmengine.logging import MMLogger
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.model.utils import detect_anomalous_params
from mmengine.registry import MODEL_WRAPPERS
from mmengine.utils.dl_utils import mmcv_full_available
from torch.nn.modules.batchnorm import _BatchNorm

from .determinism import PerSampleRandomness

# device types torch's SyncBatchNorm can synchronise
SYNC_BN_DEVICES = ('cuda', 'xpu', 'hpu', torch._C._get_privateuse1_backend_name())


def _sync_bn_types():
    kinds = [torch.nn.SyncBatchNorm]
    if mmcv_full_available():  # the same check revert_sync_batchnorm makes
        from mmcv.ops import SyncBatchNorm as MMSyncBN
        kinds.append(MMSyncBN)
    return tuple(kinds)


def sync_bn_layers(model):
    """Names of the SyncBN layers (torch's and mmcv's) of ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, _sync_bn_types())]


def _world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_bn_fallback_reason(model):
    """Why torch's SyncBN cannot synchronise ``model`` in this process, or None if it can."""
    world_size = _world_size()
    if world_size == 1:
        return 'single process: there is nothing to synchronise'
    param = next(model.parameters(), None)
    device = param.device.type if param is not None else 'cpu'
    if device not in SYNC_BN_DEVICES:
        return (f'{world_size} processes on {device}: torch SyncBN synchronises GPU tensors '
                'only')
    return None


class _CPUSyncBatchNormFunction(torch.autograd.Function):
    """Batch norm over the samples of all ranks: global mean, then global variance
    (two all-reduces), and the matching backward (one all-reduce). Parameter gradients
    stay local sums: DDP averages them like every other gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group):
        dims = [0] + list(range(2, x.dim()))
        view = (1, -1) + (1, ) * (x.dim() - 2)
        stats = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])])
        dist.all_reduce(stats, group=group)
        count = stats[-1]
        mean = stats[:-1] / count
        centred = x - mean.view(view)
        square = (centred * centred).sum(dims)
        dist.all_reduce(square, group=group)
        var = square / count
        invstd = torch.rsqrt(var + eps)
        normed = centred * invstd.view(view)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * (count / (count - 1).clamp(min=1))
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        ctx.save_for_backward(normed, invstd, weight, count)
        ctx.group = group
        out = normed
        if weight is not None:
            out = out * weight.view(view) + bias.view(view)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        normed, invstd, weight, count = ctx.saved_tensors
        dims = [0] + list(range(2, grad_out.dim()))
        view = (1, -1) + (1, ) * (grad_out.dim() - 2)
        sum_dy = grad_out.sum(dims)
        sum_dy_xhat = (grad_out * normed).sum(dims)
        grad_weight = sum_dy_xhat.clone() if weight is not None else None
        grad_bias = sum_dy.clone() if weight is not None else None
        sums = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(sums, group=ctx.group)
        mean_dy, mean_dy_xhat = (sums / count).chunk(2)
        scale = invstd if weight is None else invstd * weight
        grad_in = (grad_out - mean_dy.view(view) - normed * mean_dy_xhat.view(view)) \
            * scale.view(view)
        return grad_in, grad_weight, grad_bias, None, None, None, None, None


class CPUSyncBatchNorm(_BatchNorm):
    """SyncBN for CPU process groups (gloo); same parameters, buffers and state dict as
    ``torch.nn.SyncBatchNorm``. Evaluation and single-process training are plain BN."""

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input):
        if not self.training or _world_size() == 1:
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        running = (self.running_mean, self.running_var) if self.track_running_stats \
            else (None, None)
        return _CPUSyncBatchNormFunction.apply(input, self.weight, self.bias, *running,
                                               self.eps, momentum,
                                               self.process_group or dist.group.WORLD)


def _to_cpu_sync_bn(module):
    """Replace the SyncBN layers of ``module`` by :class:`CPUSyncBatchNorm`, moving the
    same tensors; returns the (possibly new) module."""
    if isinstance(module, _sync_bn_types()):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum,
                               module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, _to_cpu_sync_bn(child))
    return module


def convert_sync_bn_if_needed(model, logger=None):
    """Make the SyncBN layers of ``model`` (in place, same tensors) work in this process:
    BN without a process group or with one process, :class:`CPUSyncBatchNorm` in a
    multi-process CPU group; unchanged where torch's SyncBN synchronises.

    Returns the names of the converted layers (empty when nothing changed).
    """
    names = sync_bn_layers(model)
    reason = sync_bn_fallback_reason(model)
    if not names or reason is None:
        return []
    logger = logger or MMLogger.get_current_instance()
    if _world_size() > 1:
        _to_cpu_sync_bn(model)
        logger.info(f'SyncBN on CPU: {len(names)} SyncBN layers synchronise their batch '
                    f'statistics over the {_world_size()} processes with gloo ({reason})')
        return names
    if revert_sync_batchnorm(model) is not model:
        raise TypeError('convert_sync_bn_if_needed converts the layers inside a model; '
                        'call revert_sync_batchnorm on a bare SyncBN layer')
    logger.warning(
        f'SyncBN fallback: converted {len(names)} SyncBN layers to BN ({reason}). '
        'Checkpoints are unaffected.')
    return names


@MODEL_WRAPPERS.register_module()
@MODEL_WRAPPERS.register_module(name='SyncBNFallbackDDP')
class EquivalentDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose N ranks x B samples follow the 1 process x N*B
    trajectory: SyncBN works on every device (:func:`convert_sync_bn_if_needed`), and with
    ``per_sample_randomness=True`` the random draws of the forward are per sample
    (:class:`~dmt_mm.engine.determinism.PerSampleRandomness`, started each iteration by
    ``IterationSeedHook``). Registered also as ``SyncBNFallbackDDP``.
    """

    def __init__(self, module, per_sample_randomness=True, **kwargs):
        convert_sync_bn_if_needed(module)
        super().__init__(module=module, **kwargs)
        self.per_sample_randomness = PerSampleRandomness() if per_sample_randomness else None

    def train_step(self, data, optim_wrapper):
        """``MMDistributedDataParallel.train_step`` with the forward's random draws taken
        per sample."""
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, training=True)
            draws = self.per_sample_randomness.draws(_batch_size(data)) \
                if self.per_sample_randomness is not None else contextlib.nullcontext()
            with draws:
                losses = self._run_forward(data, mode='loss')
        parsed_loss, log_vars = self.module.parse_losses(losses)
        optim_wrapper.update_params(parsed_loss)
        if self.detect_anomalous_params:
            detect_anomalous_params(parsed_loss, model=self)
        return log_vars


SyncBNFallbackDDP = EquivalentDDP


def _batch_size(data):
    """The number of samples of a preprocessed batch."""
    inputs = data.get('inputs') if isinstance(data, dict) else None
    if isinstance(inputs, (list, tuple)) and inputs:
        inputs = inputs[0] if torch.is_tensor(inputs[0]) else inputs
    if torch.is_tensor(inputs) and inputs.dim():
        return inputs.shape[0]
    if isinstance(inputs, (list, tuple)):
        return len(inputs)
    samples = data.get('data_samples') if isinstance(data, dict) else None
    return len(samples) if samples is not None else 0
