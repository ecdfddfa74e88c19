"""Checkpoints: atomic signed writes (:mod:`.io`), safe reading and the choice of the
checkpoint to resume from (:mod:`.loading`), the official teacher layouts (:mod:`.formats`
gathers :mod:`.vit_layouts`, :mod:`.teacher_layouts` and :mod:`.backbone`) and the export
back to them (:mod:`.export`).

Importing the package registers the atomic file backend and the safe local loader with
mmengine. It depends on torch, mmengine and mmpretrain only, never on ``dmt_mm.models``
or ``dmt_mm.engine``; the command-line tools are in ``tools/model_converters/``.
"""
from .io import (
                 ATOMIC_BACKEND,
                 AtomicLocalBackend,
                 DiskFullError,
                 atomic_write,
                 is_signed,
                 remove_stale_partials,
                 write_signature,
)
from .loading import (
                 TRUST_ENV,
                 CorruptCheckpointError,
                 UntrustedCheckpointError,
                 find_resume_checkpoint,
                 nonfinite_tensors,
                 safe_torch_load,
)

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'DiskFullError', 'atomic_write',
           'is_signed', 'remove_stale_partials', 'write_signature', 'TRUST_ENV',
           'CorruptCheckpointError', 'UntrustedCheckpointError', 'find_resume_checkpoint',
           'nonfinite_tensors', 'safe_torch_load']
