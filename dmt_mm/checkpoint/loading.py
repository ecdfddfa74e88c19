"""Reading checkpoints: weights-only safety, clear errors for files that are not
checkpoints, and the choice of the checkpoint a run resumes from.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.x calls
``torch.load`` without saying otherwise, so mmengine's own Runner checkpoints (which pickle
``HistoryBuffer`` objects and numpy arrays) stop loading, and the usual workaround,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, turns the protection off for every file. Here:

* external checkpoints (teachers, pretrained students) load with ``weights_only=True`` and
  an explicit allow-list of what the official files need (``argparse.Namespace`` in MAE
  and DINO checkpoints, plain numpy scalars/arrays);
* checkpoints written by this project's runs are signed (:mod:`dmt_mm.checkpoint.io`) and
  load with full unpickling, since this user wrote them;
* anything else that needs more than the allow-list is refused with the opt-in:
  list the file (or its folder) in ``DMT_TRUSTED_CHECKPOINTS``;
* a file that is not a checkpoint at all (empty, truncated download, random bytes, text)
  is reported as such, whatever the trust settings.

Importing this module makes it mmengine's loader for local paths, so ``load_from``,
``--resume`` and ``init_cfg=dict(type='Pretrained')`` all go through
:func:`safe_torch_load`.
"""
import argparse
import os
import os.path as osp
import pickle
import re
import zipfile

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from dmt_mm.errors import UserError

from .io import is_signed

TRUST_ENV = 'DMT_TRUSTED_CHECKPOINTS'
# how torch < 1.6 files (and torch.save(_use_new_zipfile_serialization=False)) begin:
# pickle protocol 2, then torch's magic number
_LEGACY_HEAD = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'


class UntrustedCheckpointError(UserError, pickle.UnpicklingError):
    """The checkpoint needs unpickling beyond the allow-list and is not trusted."""


class CorruptCheckpointError(UserError, ValueError):
    """The file is not a readable checkpoint (empty, truncated, or another kind of file)."""


def _allowed_globals():
    allowed = [argparse.Namespace, np.dtype, np.ndarray, np.core.multiarray._reconstruct,
               np.core.multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64', 'int32',
                                            'uint8', 'bool')]
    return allowed


def _corrupt(path, why):
    size = osp.getsize(path)
    return CorruptCheckpointError(
        f'{path} is corrupt or not a checkpoint ({why}; {size} bytes): a torch checkpoint is '
        'a zip archive (or, from torch < 1.6, a pickle). Download or create the file again; '
        'an interrupted copy or download is the usual cause')


def _check_container(path):
    """Raise :class:`CorruptCheckpointError` unless ``path`` looks like a torch file."""
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_HEAD))
    if not head:
        raise _corrupt(path, 'the file is empty')
    if head.startswith(b'PK'):
        if not zipfile.is_zipfile(path):
            raise _corrupt(path, 'a zip archive without its end: truncated')
        return
    if head != _LEGACY_HEAD:
        raise _corrupt(path, f'it starts with {head[:8]!r}, neither a zip archive nor a '
                       'torch pickle')


def is_trusted(path):
    """Signed by this user's runs, or listed (file or folder) in DMT_TRUSTED_CHECKPOINTS."""
    if is_signed(path):
        return True
    real = osp.realpath(path)
    for entry in filter(None, os.environ.get(TRUST_ENV, '').split(os.pathsep)):
        entry = osp.realpath(entry)
        if real == entry or real.startswith(entry.rstrip(os.sep) + os.sep):
            return True
    return False


def _load(path, map_location, weights_only, mmap):
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only,
                          mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, IndexError, MemoryError) as exc:
        raise _corrupt(path, f'reading it fails: {str(exc).splitlines()[0][:200]}') from exc


def safe_torch_load(path, map_location='cpu', mmap=False):
    """``torch.load`` with ``weights_only=True`` and the allow-list; full unpickling only for
    trusted files. Raises :class:`CorruptCheckpointError` for files that are not
    checkpoints and :class:`UntrustedCheckpointError` naming the opt-in."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    _check_container(path)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return _load(path, map_location, True, mmap)
    except pickle.UnpicklingError as exc:
        # the container is sound, so this is weights_only refusing an object
        message = str(exc)
        if is_trusted(path):
            try:
                return _load(path, map_location, False, mmap)
            except pickle.UnpicklingError as full_exc:
                raise _corrupt(path, f'unpickling fails: {full_exc}'[:200]) from None
        detail = message.split('WeightsUnpickler error:')[-1].split('Check the documentation')[0]
        detail = re.sub(r'\s+', ' ', detail).strip()
        raise UntrustedCheckpointError(
            f'checkpoint {path!r} holds Python objects beyond tensors and the allow-list '
            f'({detail[:200]}). Loading it would run arbitrary pickled code. If you trust '
            f'the file, list it (or its folder) in the environment variable {TRUST_ENV} '
            '(os.pathsep-separated) and retry; checkpoints written by this project\'s own '
            'runs are signed and load without it.') from None


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename, map_location):
    """mmengine's local-file loader, with weights-only safety (see module docstring)."""
    return safe_torch_load(filename, map_location=map_location)


# --- integrity and the choice of the checkpoint to resume from ------------------------------
def nonfinite_tensors(obj, prefix=''):
    """Names (``state_dict.layers.0.attn.qkv.weight``, ``optimizer.state.3.exp_avg``) of the
    floating-point tensors in a nested checkpoint object that hold NaN or Inf."""
    bad = []
    if torch.is_tensor(obj):
        if obj.is_floating_point() and obj.numel() and not torch.isfinite(obj).all():
            bad.append(prefix or '<tensor>')
    elif isinstance(obj, dict):
        for key, value in obj.items():
            bad += nonfinite_tensors(value, f'{prefix}.{key}' if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            bad += nonfinite_tensors(value, f'{prefix}.{i}' if prefix else str(i))
    return bad


def _step_of(name):
    match = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', name)
    return int(match.group(1)) if match else -1


def resumable_checkpoints(work_dir):
    """The work dir's checkpoints a run could resume from, newest first: the one
    ``last_checkpoint`` names (looked up in *this* folder, so a copied or moved work dir
    resumes from its own files), then ``iter_N`` / ``epoch_N`` files by step."""
    if not osp.isdir(work_dir):
        return []
    files = [f for f in os.listdir(work_dir)
             if f.endswith('.pth') and not f.startswith(('best_', '.'))]
    files.sort(key=lambda f: (_step_of(f), osp.getmtime(osp.join(work_dir, f))), reverse=True)
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = osp.basename(f.read().strip())
        if named in files:
            files.remove(named)
            files.insert(0, named)
    return [osp.join(work_dir, f) for f in files]


def find_resume_checkpoint(work_dir):
    """The newest checkpoint of ``work_dir`` that is complete (its signature verifies) and
    holds only finite values; None when there is none. Each one passed over is logged."""
    for path in resumable_checkpoints(work_dir):
        if not is_signed(path):
            reason = 'incomplete or not written by this project (no valid signature)'
        else:
            bad = nonfinite_tensors(safe_torch_load(path, mmap=True))
            if not bad:
                return path
            reason = f'{len(bad)} tensors hold NaN/Inf (e.g. {bad[:3]})'
        print_log(f'resume: skipping {path}: {reason}', logger='current', level=30)
    return None
