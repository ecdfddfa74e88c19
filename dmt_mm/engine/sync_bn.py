"""SyncBN that degrades to BN where it cannot synchronise, instead of crashing.

mmseg's UperNet/FCN heads and Feature2Pyramid neck use ``SyncBN``. Where it breaks:

* ``launcher='none'`` (one process, no process group): mmengine's Runner already swaps
  SyncBN for BN (it logs "Distributed training is not used ..."); nothing to do.
* a process group on CPU (``tools/dist_train.sh`` / ``--launcher pytorch`` with gloo, even a
  single process): DDP refuses the model, ``SyncBatchNorm layers only work with GPU
  modules``. :class:`SyncBNFallbackDDP` converts SyncBN -> BN first and says so.
* a model built outside the Runner (a script, ``mmseg.apis.init_model``) and trained
  without a process group on an older torch: ``Default process group has not been
  initialized``. Call :func:`convert_sync_bn_if_needed` on it.

The conversion is mmengine's ``revert_sync_batchnorm``: the same parameter and buffer
tensors move into BN layers, so optimizers built earlier and every checkpoint stay valid
(SyncBN and BN state dicts are identical). Multi-GPU runs keep SyncBN.
"""
import torch
import torch.distributed as dist
from mmengine.logging import MMLogger
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from mmengine.utils.dl_utils import mmcv_full_available

# device types torch's SyncBatchNorm can synchronise
SYNC_BN_DEVICES = ('cuda', 'xpu', 'hpu', torch._C._get_privateuse1_backend_name())


def sync_bn_layers(model):
    """Names of the SyncBN layers (torch's and mmcv's) of ``model``."""
    kinds = [torch.nn.SyncBatchNorm]
    if mmcv_full_available():  # the same check revert_sync_batchnorm makes
        from mmcv.ops import SyncBatchNorm as MMSyncBN
        kinds.append(MMSyncBN)
    return [name for name, m in model.named_modules() if isinstance(m, tuple(kinds))]


def sync_bn_fallback_reason(model):
    """Why SyncBN cannot synchronise for ``model`` in this process, or None if it can."""
    world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world_size == 1:
        return 'single process: there is nothing to synchronise'
    param = next(model.parameters(), None)
    device = param.device.type if param is not None else 'cpu'
    if device not in SYNC_BN_DEVICES:
        return (f'{world_size} processes on {device}: torch SyncBN synchronises GPU tensors '
                'only, so BN statistics are per process here')
    return None


def convert_sync_bn_if_needed(model, logger=None):
    """Swap SyncBN -> BN in ``model`` (in place, same tensors) when it cannot synchronise.

    Returns the names of the converted layers (empty when nothing changed).
    """
    names = sync_bn_layers(model)
    reason = sync_bn_fallback_reason(model)
    if not names or reason is None:
        return []
    if revert_sync_batchnorm(model) is not model:
        raise TypeError('convert_sync_bn_if_needed converts the layers inside a model; '
                        'call revert_sync_batchnorm on a bare SyncBN layer')
    (logger or MMLogger.get_current_instance()).warning(
        f'SyncBN fallback: converted {len(names)} SyncBN layers to BN ({reason}). '
        'Checkpoints are unaffected; train on several GPUs for synchronised statistics.')
    return names


@MODEL_WRAPPERS.register_module()
class SyncBNFallbackDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that first converts SyncBN to BN where SyncBN cannot
    run (CPU process groups, one process); on GPUs it is MMDistributedDataParallel.

    Use ``model_wrapper_cfg = dict(type='SyncBNFallbackDDP', ...)`` in a config.
    """

    def __init__(self, module, **kwargs):
        convert_sync_bn_if_needed(module)
        super().__init__(module=module, **kwargs)
