"""PCA pictures of ViT patch features: the first three principal components of each model's
last-block patch tokens, shown as RGB, side by side for teachers and student.

Why this picture: it shows, without labels, which parts of an image a model groups
together; a distilled student should inherit its teachers' part structure. Any ViT
checkpoint loads (official MAE / MoCo v3 / DINO / iBOT files, mmpretrain or extracted
student files), through the same strict loader as the teachers.
"""
import glob
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_DIR = osp.join(osp.dirname(__file__), 'sample_images')
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def default_images() -> List[str]:
    """Public-domain / CC0 photos: matplotlib's grace_hopper.jpg and the bundled ones."""
    paths = []
    try:
        from matplotlib import cbook
        paths.append(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))
    except (ImportError, OSError, ValueError):
        pass
    paths += sorted(glob.glob(osp.join(SAMPLE_DIR, '*.jpg')))
    return [str(p) for p in paths]


def load_vit(path: str, fmt: str = 'auto', num_heads: Optional[int] = None,
             arch: Optional[Dict] = None, use_momentum_encoder: bool = False):
    """A ``DMTViT`` built to fit the checkpoint's weights and loaded strictly.

    The number of attention heads is not stored in weights: pass ``num_heads`` (or a full
    ``arch``) unless the model follows the 64-dims-per-head convention.
    """
    from dmt_mm.checkpoint.backbone import infer_vit_arch
    from dmt_mm.checkpoint.loading import safe_torch_load
    from dmt_mm.checkpoint.vit_layouts import convert_vit_state_dict, load_vit_weights
    from dmt_mm.models.backbones import DMTViT
    checkpoint = safe_torch_load(path)
    found = convert_vit_state_dict(checkpoint, fmt, use_momentum_encoder)
    kwargs = infer_vit_arch(found.state_dict)
    if arch is not None:
        kwargs['arch'] = dict(arch)
    elif num_heads is not None:
        kwargs['arch']['num_heads'] = int(num_heads)
    if kwargs['arch']['embed_dims'] % kwargs['arch']['num_heads']:
        raise ValueError(f'{path}: {kwargs["arch"]["embed_dims"]} dims do not split into '
                         f'{kwargs["arch"]["num_heads"]} heads; pass the right num_heads')
    vit = DMTViT(**kwargs)
    load_vit_weights(vit, checkpoint, fmt=fmt, use_momentum_encoder=use_momentum_encoder)
    vit.eval()  # (mmpretrain's ViT.train() returns None)
    return vit


def load_image(path: str, size: int) -> Tuple[np.ndarray, torch.Tensor]:
    """(RGB uint8 HxWx3 resized so the short side is ``size`` and centre-cropped to a
    square, normalised (1, 3, size, size) tensor)."""
    from PIL import Image
    image = Image.open(path).convert('RGB')
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
    x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return rgb, x


@torch.no_grad()
def patch_features(vit, x: torch.Tensor) -> torch.Tensor:
    """(h, w, C) final-normed last-block patch tokens."""
    out = vit.forward_tokens(x)
    tokens = out['tokens'][0, out['num_extra_tokens']:]
    h, w = out['grid']
    return tokens.reshape(h, w, -1).float()


def pca_rgb(features: Sequence[torch.Tensor], lo_pct: float = 1.0,
            hi_pct: float = 99.0) -> List[np.ndarray]:
    """First three principal components of all images' tokens of one model (one basis for
    every image, so colours are comparable across images), each mapped to [0, 1] between
    its percentiles."""
    flat = torch.cat([f.reshape(-1, f.shape[-1]) for f in features]).double()
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    k = min(3, v.shape[0])
    proj = (centred @ v[:k].T).numpy()
    if k < 3:
        proj = np.concatenate([proj, np.zeros((proj.shape[0], 3 - k))], axis=1)
    lo = np.percentile(proj, lo_pct, axis=0)
    hi = np.percentile(proj, hi_pct, axis=0)
    proj = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    out, start = [], 0
    for f in features:
        n = f.shape[0] * f.shape[1]
        out.append(proj[start:start + n].reshape(f.shape[0], f.shape[1], 3))
        start += n
    return out


def pca_figure(models: Dict[str, torch.nn.Module], images: Sequence[str], out_path: str,
               size: int = 224, title: str = '') -> Dict:
    """Write the picture: one row per image, columns = photo + one PCA map per model.

    Returns per model the token grid and the fraction of variance of its first three
    components (a number a test can check)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if not images:
        raise ValueError('no images given for the PCA picture')
    loaded = [load_image(p, size) for p in images]
    maps, stats = {}, {}
    for name, vit in models.items():
        feats = [patch_features(vit, x) for _, x in loaded]
        maps[name] = pca_rgb(feats)
        flat = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats]).double()
        s = torch.linalg.svdvals(flat - flat.mean(dim=0))
        stats[name] = dict(grid=list(feats[0].shape[:2]),
                           explained=float((s[:3] ** 2).sum() / (s ** 2).sum()))
    cols = 1 + len(models)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.2 * cols, 2.2 * len(images)),
                             squeeze=False)
    for r, (rgb, _) in enumerate(loaded):
        axes[r, 0].imshow(rgb)
        for c, name in enumerate(models, 1):
            # nearest: one square per token, no invented detail
            axes[r, c].imshow(F.interpolate(
                torch.from_numpy(maps[name][r]).permute(2, 0, 1)[None], size=(size, size),
                mode='nearest')[0].permute(1, 2, 0).numpy())
    for c, name in enumerate(['image'] + list(models)):
        label = name if c == 0 else f'{name}\n{stats[name]["grid"][0]}x' \
            f'{stats[name]["grid"][1]} tokens'
        axes[0, c].set_title(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return stats
