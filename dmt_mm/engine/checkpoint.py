"""Atomic, signed checkpoint writes and weights-only-safe reads for mmengine runners.

* ``AtomicLocalBackend`` (file backend ``'dmt_atomic_local'``): ``put`` writes to a temporary
  file in the same folder, fsyncs it, renames it over the target and then writes the
  signature (:mod:`dmt_mm.utils.safe_load`). A kill at any moment leaves either the old
  checkpoint or the complete new one, never a truncated file under the checkpoint's name.
  ``tools/train.py`` makes it the CheckpointHook's backend unless a config chooses another.
* Importing this module replaces mmengine's loader for local paths with
  :func:`dmt_mm.utils.safe_load.safe_torch_load`, so ``load_from``, ``--resume`` and
  ``init_cfg=dict(type='Pretrained')`` all keep torch's ``weights_only`` protection.
"""
import hashlib
import os
import os.path as osp
import tempfile

from mmengine.fileio import LocalBackend, register_backend
from mmengine.runner.checkpoint import CheckpointLoader

from dmt_mm.utils.safe_load import SIGNATURE_SUFFIX, safe_torch_load, write_signature

ATOMIC_BACKEND = 'dmt_atomic_local'


@register_backend(ATOMIC_BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic and whose checkpoints are signed."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(filepath), suffix='.partial',
                                   dir=folder)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise
        if filepath.endswith('.pth'):
            write_signature(filepath, hashlib.sha256(obj).digest())

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)

    def remove(self, filepath) -> None:
        """CheckpointHook's ``max_keep_ckpts`` clean-up: the signature goes too."""
        super().remove(filepath)
        if osp.exists(str(filepath) + SIGNATURE_SUFFIX):
            os.remove(str(filepath) + SIGNATURE_SUFFIX)


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename, map_location):
    """mmengine's local-file loader, with weights-only safety (see module docstring)."""
    return safe_torch_load(filename, map_location=map_location)
