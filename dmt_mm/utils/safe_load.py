"""Checkpoint loading that keeps torch's ``weights_only`` protection on.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.x calls
``torch.load`` without saying otherwise, so mmengine's own Runner checkpoints (which pickle
``HistoryBuffer`` objects and numpy arrays) stop loading, and the usual workaround,
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, turns the protection off for every file.

Here instead:

* external checkpoints (teachers, pretrained students) load with ``weights_only=True`` and
  an explicit allow-list of what the official files need (``argparse.Namespace`` in MAE
  and DINO checkpoints, plain numpy scalars/arrays);
* checkpoints written by this project's runs carry a signature file (``<ckpt>.sig``, an
  HMAC of the file's SHA-256 under a per-user key, see :mod:`dmt_mm.engine.checkpoint`);
  a file whose signature verifies loads with full unpickling, since this user wrote it;
* anything else that needs more than the allow-list is refused with a message explaining
  the opt-in: list the file (or its folder) in ``DMT_TRUSTED_CHECKPOINTS``.
"""
import argparse
import hashlib
import hmac
import os
import os.path as osp
import pickle

import numpy as np
import torch

TRUST_ENV = 'DMT_TRUSTED_CHECKPOINTS'
KEY_ENV = 'DMT_CHECKPOINT_KEY_FILE'
SIGNATURE_SUFFIX = '.sig'


def _allowed_globals():
    allowed = [argparse.Namespace, np.dtype, np.ndarray, np.core.multiarray._reconstruct,
               np.core.multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64', 'int32',
                                            'uint8', 'bool')]
    return allowed


class UntrustedCheckpointError(pickle.UnpicklingError):
    """The checkpoint needs unpickling beyond the allow-list and is not trusted."""


def _key():
    path = os.environ.get(KEY_ENV, osp.expanduser('~/.cache/dmt_mm/checkpoint_key'))
    if not osp.exists(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(os.urandom(32))
    with open(path, 'rb') as f:
        return f.read()


def file_digest(path):
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            sha.update(block)
    return sha.digest()


def signature_of(digest):
    return hmac.new(_key(), digest, hashlib.sha256).hexdigest()


def write_signature(path, digest=None):
    """Mark ``path`` as written by this user's dmt_mm run (see module docstring)."""
    digest = digest if digest is not None else file_digest(path)
    tmp = path + SIGNATURE_SUFFIX + '.tmp'
    with open(tmp, 'w') as f:
        f.write(signature_of(digest))
    os.replace(tmp, path + SIGNATURE_SUFFIX)


def is_signed(path):
    sig_path = path + SIGNATURE_SUFFIX
    if not osp.isfile(sig_path):
        return False
    with open(sig_path) as f:
        return hmac.compare_digest(f.read().strip(), signature_of(file_digest(path)))


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


def safe_torch_load(path, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and the allow-list; full unpickling only for
    trusted files. Raises :class:`UntrustedCheckpointError` naming the opt-in otherwise."""
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if is_trusted(path):
            return torch.load(path, map_location=map_location, weights_only=False)
        raise UntrustedCheckpointError(
            f'checkpoint {path!r} holds Python objects beyond tensors and the allow-list '
            f'({str(exc).splitlines()[0]}). Loading it would run arbitrary pickled code. '
            f'If you trust the file, list it (or its folder) in the environment variable '
            f'{TRUST_ENV} (os.pathsep-separated) and retry; checkpoints written by this '
            'project\'s own runs are signed and load without it.') from exc
