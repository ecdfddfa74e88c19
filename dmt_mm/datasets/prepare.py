"""Make sure a toy world exists before a dataset reads it, safely across processes."""
import fcntl
import os
import os.path as osp

from mmengine.logging import print_log

from .toy_world import ToyWorldSpec, generate_toy_world


def ensure_toy_world(data_root, spec=None):
    """Generate the toy world under ``data_root`` unless a finished one is there.

    Several processes (DDP ranks, dataloader workers) may call this at once: a file lock
    serialises them, so the world is written exactly once and never read half-written.
    """
    spec = ToyWorldSpec(**(spec or {}))
    os.makedirs(data_root, exist_ok=True)
    with open(osp.join(data_root, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not osp.exists(osp.join(data_root, 'DONE')):
                print_log(f'generating the toy world in {data_root} ({spec})', logger='current')
            generate_toy_world(data_root, spec)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return data_root
