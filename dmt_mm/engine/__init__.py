"""Runner-side parts: safe checkpoint I/O, layer-decay optimizer constructor, hooks,
deterministic sampling. Importing it registers them (tools/train.py and test.py do)."""
from .checkpoint import ATOMIC_BACKEND, AtomicLocalBackend
from .determinism import IterationSeedHook, PerSampleSeedDataset, PerSampleSeedSampler
from .hooks import (CheckpointCompatibilityHook, DatasetSanityHook, NonFiniteLossGuardHook,
                    RankConsistencyHook)
from .optimizers import LayerDecayOptimWrapperConstructor
from .sync_bn import SyncBNFallbackDDP, convert_sync_bn_if_needed

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'LayerDecayOptimWrapperConstructor',
           'NonFiniteLossGuardHook', 'RankConsistencyHook', 'CheckpointCompatibilityHook',
           'DatasetSanityHook', 'IterationSeedHook', 'PerSampleSeedDataset',
           'PerSampleSeedSampler', 'SyncBNFallbackDDP', 'convert_sync_bn_if_needed']
