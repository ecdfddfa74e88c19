"""What a stage reads, made comparable and reproducible: a config's digest (its local
``_base_`` chain included, so an edited base redoes the stage) and the random-init student
file that the from-scratch rows load like any pretrained student."""
import hashlib
import os.path as osp
import threading

# the study runs in-process stages in threads (--jobs): torch's global RNG is one per
# process, so two random students seeded at once would draw from each other's stream
_GLOBAL_RNG = threading.Lock()


def config_digest(path: str, _seen=None) -> str:
    """Hash of a config file and every local ``_base_`` it inherits (recursively); package
    bases (``mmdet::...``) count by the package's version. Part of each stage's signature,
    so editing a config redoes the stages that use it."""
    import re
    from importlib.metadata import version
    seen = set() if _seen is None else _seen
    path = osp.abspath(path)
    if path in seen:
        return ''
    seen.add(path)
    with open(path, 'rb') as f:
        text = f.read()
    parts = [hashlib.sha256(text).hexdigest()]
    match = re.search(rb'^_base_\s*=\s*(\[.*?\]|[\'"][^\'"]*[\'"])', text, re.M | re.S)
    for base in re.findall(rb'[\'"]([^\'"]+)[\'"]', match.group(1)) if match else []:
        base = base.decode()
        if '::' in base:
            package = base.split('::')[0]  # scope -> distribution (no import: cheap)
            package = {'mmseg': 'mmsegmentation'}.get(package, package)
            parts.append(f'{base}@{version(package)}')
        else:
            parts.append(config_digest(osp.join(osp.dirname(path), base), seen))
    return hashlib.sha256('|'.join(parts).encode()).hexdigest()[:16]


def write_random_student(config: str, seed: int, path: str) -> None:
    """The student of a DMT config, randomly initialised under ``seed`` (the random-init
    row of probes that need a checkpoint file: tools/test.py)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import dmt_mm.models  # noqa: F401  (registers DMTViT)
    from dmt_mm.checkpoint.backbone import save_backbone_checkpoint
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            backbone = MODELS.build(Config.fromfile(config).model.backbone)
        backbone.init_weights()
    save_backbone_checkpoint(backbone.state_dict(), path, meta=dict(seed=seed, init='random'))
