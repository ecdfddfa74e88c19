"""Writing checkpoints and results so that nothing is ever half-written.

* :func:`atomic_write` is the one writer every file of the project goes through
  (Runner checkpoints, ``last_checkpoint``, signatures, converted and exported weights,
  metrics): a temporary ``.<name>.<random>.partial`` file in the target folder, fsynced,
  then renamed over the target. A kill at any moment leaves the previous file or the
  complete new one. A full disk raises :class:`DiskFullError` naming the path and the
  bytes, before anything is written when the size is known.
* Checkpoints of this project's runs are *signed*: ``<ckpt>.sig`` holds an HMAC of the
  file's SHA-256 under a per-user key (``~/.cache/dmt_mm/checkpoint_key``). A signed file
  is complete (the signature is written after the rename) and was written by this user,
  so :mod:`dmt_mm.checkpoint.loading` may unpickle it fully.
* :class:`AtomicLocalBackend` (mmengine file backend ``'dmt_atomic_local'``) routes
  mmengine's checkpoint writes here; ``tools/train.py`` makes it the CheckpointHook's
  backend unless a config chooses another.
"""
import errno
import hashlib
import hmac
import os
import os.path as osp
import shutil
import tempfile

from mmengine.fileio import LocalBackend, register_backend

from dmt_mm.errors import UserError

ATOMIC_BACKEND = 'dmt_atomic_local'
KEY_ENV = 'DMT_CHECKPOINT_KEY_FILE'
SIGNATURE_SUFFIX = '.sig'
PARTIAL_SUFFIX = '.partial'
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(UserError, OSError):
    """The file system has no room for the file being written."""


def _file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _disk_full(path, needed):
    folder = osp.dirname(osp.abspath(path))
    free = shutil.disk_usage(folder).free
    what = f'{needed} bytes needed' if isinstance(needed, int) else needed
    return DiskFullError(
        f'no space left to write {path} ({what}, {free} bytes free in {folder}). The '
        'previous version of the file, if any, is untouched; free some space or write '
        'elsewhere (e.g. --work-dir on another disk) and run again')


def atomic_write(path, content, sign=False):
    """Write ``content`` (bytes, str, or a callable taking the open binary file) to
    ``path`` atomically; with ``sign=True`` also write its signature. Returns ``path``."""
    path = str(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(content, str):
        content = content.encode('utf-8')
    size = len(content) if isinstance(content, (bytes, bytearray, memoryview)) else None
    if size is not None and shutil.disk_usage(folder).free < size:
        raise _disk_full(path, size)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix=PARTIAL_SUFFIX,
                               dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            if size is None:
                content(f)
            else:
                f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp's 0600 -> an ordinary file's mode
        os.replace(tmp, path)
    except BaseException as exc:
        written = osp.getsize(tmp) if osp.exists(tmp) else 0
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            needed = size if size is not None else f'more than the {written} bytes written'
            raise _disk_full(path, needed) from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    if sign:
        write_signature(path, hashlib.sha256(content).digest() if size is not None else None)
    return path


def remove_stale_partials(folder):
    """Delete the temporary files of writes that were killed (``.<name>.*.partial``);
    returns their names. Call it before a run starts writing to ``folder``."""
    if not osp.isdir(folder):
        return []
    stale = sorted(f for f in os.listdir(folder)
                   if f.startswith('.') and f.endswith(PARTIAL_SUFFIX))
    for name in stale:
        try:
            os.remove(osp.join(folder, name))
        except FileNotFoundError:
            pass
    return stale


# --- signatures -------------------------------------------------------------------------------
def _key():
    path = os.environ.get(KEY_ENV, osp.expanduser('~/.cache/dmt_mm/checkpoint_key'))
    if not osp.exists(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'wb') as f:
                f.write(os.urandom(32))
        except FileExistsError:  # another process created it first
            pass
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
    """Mark ``path`` as complete and written by this user's dmt_mm run."""
    digest = digest if digest is not None else file_digest(path)
    atomic_write(path + SIGNATURE_SUFFIX, signature_of(digest))


def is_signed(path):
    sig_path = path + SIGNATURE_SUFFIX
    if not (osp.isfile(path) and osp.isfile(sig_path)):
        return False
    with open(sig_path) as f:
        return hmac.compare_digest(f.read().strip(), signature_of(file_digest(path)))


@register_backend(ATOMIC_BACKEND, force=True)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with atomic writes and signed checkpoints."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        atomic_write(filepath, obj, sign=filepath.endswith('.pth'))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))

    def remove(self, filepath) -> None:
        """CheckpointHook's ``max_keep_ckpts`` clean-up: the signature goes too."""
        super().remove(filepath)
        if osp.exists(str(filepath) + SIGNATURE_SUFFIX):
            os.remove(str(filepath) + SIGNATURE_SUFFIX)
