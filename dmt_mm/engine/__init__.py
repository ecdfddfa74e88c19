"""Runner-side parts: safe checkpoint I/O, layer-decay optimizer constructor, hooks.
Importing it registers them (tools/train.py and tools/test.py always do)."""
from .checkpoint import ATOMIC_BACKEND, AtomicLocalBackend
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'LayerDecayOptimWrapperConstructor']
from .hooks import NonFiniteLossGuardHook, RankConsistencyHook  # noqa: E402

__all__ += ['NonFiniteLossGuardHook', 'RankConsistencyHook']
