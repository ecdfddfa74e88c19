"""Runner-side parts: the defaults every config gets (launch, defaults), deterministic
sampling and seeding, the reproducible runner, the DDP wrapper with SyncBN on any device,
the layer-decay optimizer constructor and hooks. Importing it registers them (tools/train.py
and test.py do) and the checkpoint I/O of :mod:`dmt_mm.checkpoint`."""
import dmt_mm.checkpoint  # noqa: F401  (atomic backend, safe loader)

from .determinism import (
                          IterationSeedHook,
                          PerSampleRandomness,
                          PerSampleSeedDataset,
                          PerSampleSeedSampler,
)
from .hooks import (
                          CheckpointCompatibilityHook,
                          DatasetSanityHook,
                          NonFiniteGuardHook,
                          RankConsistencyHook,
)
from .optimizers import LayerDecayOptimWrapperConstructor
from .runner import ReproducibleRunner
from .sync_bn import CPUSyncBatchNorm, EquivalentDDP, SyncBNFallbackDDP, convert_sync_bn_if_needed

__all__ = ['LayerDecayOptimWrapperConstructor', 'NonFiniteGuardHook', 'RankConsistencyHook',
           'CheckpointCompatibilityHook', 'DatasetSanityHook', 'IterationSeedHook',
           'PerSampleRandomness', 'PerSampleSeedDataset', 'PerSampleSeedSampler',
           'ReproducibleRunner', 'CPUSyncBatchNorm', 'EquivalentDDP', 'SyncBNFallbackDDP',
           'convert_sync_bn_if_needed']
