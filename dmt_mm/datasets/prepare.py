"""Make sure a toy world exists before a dataset reads it, safely across processes."""
import fcntl
import os
import os.path as osp

from mmengine.logging import print_log

from .toy_world import ToyWorldSpec, generate_toy_world


def ensure_toy_world(data_root, spec=None):
    """Generate the toy world under ``data_root`` unless a finished one is there.

    With ``spec`` None a finished world of any spec is used as it is (the study writes a
    version-2 world that every config of the study reads) and a missing one is generated
    with the default spec; a given ``spec`` must match the finished world, which is
    otherwise regenerated.

    Several processes (DDP ranks, dataloader workers) may call this at once: a file lock
    serialises them, so the world is written exactly once and never read half-written.
    """
    done = osp.join(data_root, 'DONE')
    if spec is None and osp.exists(done):
        return data_root
    spec = ToyWorldSpec(**(spec or {}))
    os.makedirs(data_root, exist_ok=True)
    with open(osp.join(data_root, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not osp.exists(done):
                print_log(f'generating the toy world in {data_root} ({spec})', logger='current')
            generate_toy_world(data_root, spec)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return data_root
