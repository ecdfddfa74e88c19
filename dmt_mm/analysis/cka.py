"""Teacher diversity: linear CKA between the blocks of teachers and students.

Linear centred kernel alignment (Kornblith et al., ICML 2019, "Similarity of Neural
Network Representations Revisited", eq. 5 with the linear kernel) compares two
representations of the same n samples, X (n x p) and Y (n x q), whatever their widths:

    CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F * ||Y_c^T Y_c||_F)

with X_c, Y_c the column-centred matrices. It is 1 for X against itself, invariant to
orthogonal transforms and isotropic scaling of either side (not to arbitrary invertible
maps), and 0 when the centred features are orthogonal. Two teachers with a low CKA carry
different information: that is what makes them worth distilling together.

Samples here are patch tokens: every model's tokens are resized to one common grid (the
student's, as the targets are) and each (image, position) is a sample, so n = images x
h x w. ``pool='mean'`` compares per-image mean tokens instead (n = images).

API (used by ``tools/analysis_tools/teacher_cka.py`` and the miniature study):

* :func:`linear_cka` -- two feature matrices in, one number out;
* :func:`cka_matrix` -- ``{name: (n, d) features}`` in, :class:`CKAMatrix` out (every pair,
  or rows x columns with ``others``);
* :func:`block_features` -- a DMT config (+ optional DMT / student checkpoint) and images
  in, ``{'<model>.b<block>': (n, d)}`` out for every teacher and the student;
* :func:`load_images` -- an image folder as the student sees it;
* :meth:`CKAMatrix.save` -- heatmap PNG + JSON.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def _centred(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2:
        raise ValueError(f'CKA features must be (samples, features), got {tuple(x.shape)}')
    x = x.double()
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of ``x`` (n, p) and ``y`` (n, q), the same n samples in the same order."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'CKA compares the same samples: {x.shape[0]} vs {y.shape[0]} rows')
    x, y = _centred(x), _centred(y)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if norms > 0 else float('nan')


@dataclass
class CKAMatrix:
    """CKA values (rows x cols) with the feature names on each axis."""
    values: torch.Tensor
    rows: List[str]
    cols: List[str]

    def as_dict(self) -> Dict:
        return dict(rows=list(self.rows), cols=list(self.cols),
                    values=[[round(float(v), 6) for v in row] for row in self.values],
                    measure='linear CKA (Kornblith et al., 2019)')

    def save(self, out_dir: str, stem: str = 'teacher_cka', title: Optional[str] = None,
             meta: Optional[Dict] = None) -> Dict[str, str]:
        """Write ``<stem>.json`` (names, values, ``meta``) and ``<stem>.png`` (heatmap with
        the values written in, models separated by lines) into ``out_dir``, atomically."""
        from dmt_mm.checkpoint.io import atomic_write
        os.makedirs(out_dir, exist_ok=True)
        paths = dict(json=osp.join(out_dir, f'{stem}.json'), png=osp.join(out_dir, f'{stem}.png'))
        atomic_write(paths['json'], json.dumps(dict(self.as_dict(), **(meta or {})), indent=1))
        atomic_write(paths['png'], lambda f: self._plot(f, title))
        return paths

    def _plot(self, fileobj, title):
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        values = self.values.float().numpy()
        rows, cols = len(self.rows), len(self.cols)
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * cols, 1.0 + 0.5 * rows), dpi=110)
        image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap='viridis')
        ax.set_xticks(range(cols), self.cols, rotation=90, fontsize=7)
        ax.set_yticks(range(rows), self.rows, fontsize=7)
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, f'{values[i, j]:.2f}', ha='center', va='center', fontsize=5.5,
                        color='white' if values[i, j] < 0.6 else 'black')
        for names, line in ((self.rows, ax.axhline), (self.cols, ax.axvline)):
            models = [n.rsplit('.', 1)[0] for n in names]
            for k in range(1, len(models)):
                if models[k] != models[k - 1]:
                    line(k - 0.5, color='white', linewidth=1.2)
        fig.colorbar(image, ax=ax, fraction=0.04, label='linear CKA')
        ax.set_title(title or 'linear CKA per block', fontsize=9)
        fig.tight_layout()
        fig.savefig(fileobj, format='png')
        plt.close(fig)


def cka_matrix(features: Mapping[str, torch.Tensor],
               others: Optional[Mapping[str, torch.Tensor]] = None) -> CKAMatrix:
    """Linear CKA of every pair of ``features`` ({name: (n, d)}, the same n samples), or of
    every ``features`` entry (rows) against every ``others`` entry (columns). Each matrix
    product is computed once per pair, in float64."""
    rows = list(features)
    cols = list(others) if others is not None else rows
    if not rows or not cols:
        raise ValueError('cka_matrix needs at least one feature matrix on each axis')
    col_src = others if others is not None else features
    centred = {('r', k): _centred(v) for k, v in features.items()}
    centred.update({('c', k): _centred(v) for k, v in col_src.items()}
                   if others is not None else {('c', k): centred[('r', k)] for k in rows})
    n = {t.shape[0] for t in centred.values()}
    if len(n) != 1:
        raise ValueError(f'CKA compares the same samples: the features have {sorted(n)} rows')
    self_norm = {key: torch.linalg.matrix_norm(x.T @ x) for key, x in centred.items()}
    values = torch.empty(len(rows), len(cols), dtype=torch.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if others is None and j < i:
                values[i, j] = values[j, i]
                continue
            x, y = centred[('r', r)], centred[('c', c)]
            denom = self_norm[('r', r)] * self_norm[('c', c)]
            values[i, j] = (torch.linalg.matrix_norm(y.T @ x) ** 2 / denom) if denom > 0 \
                else float('nan')
    return CKAMatrix(values, rows, cols)


# ------------------------------------------------------------------------------- features
def spaced_blocks(depth: int, count: int) -> List[int]:
    """``count`` block indices spread over ``depth`` blocks, ending with the last:
    depth 12, count 4 -> [2, 5, 8, 11]."""
    count = max(1, min(int(count), depth))
    return sorted({round((k + 1) * depth / count) - 1 for k in range(count)})


def _resolve_blocks(depth: int, blocks: Union[int, Sequence[int]]) -> List[int]:
    if isinstance(blocks, int):
        return spaced_blocks(depth, blocks)
    return sorted({int(b) % depth for b in blocks})


def _pool(tokens: torch.Tensor, src_grid, dst_grid, pool: str) -> torch.Tensor:
    from dmt_mm.models.target_generators import resize_tokens
    if pool == 'mean':
        return tokens.float().mean(dim=1)
    tokens = resize_tokens(tokens.float(), src_grid, dst_grid)
    return tokens.reshape(-1, tokens.shape[-1])


@torch.no_grad()
def model_block_features(model, images: torch.Tensor,
                         blocks: Union[int, Sequence[int]] = 4, pool: str = 'tokens',
                         include_student: bool = True, batch_size: int = 8
                         ) -> 'OrderedDict[str, torch.Tensor]':
    """Per-block patch-token features of a built DMT model's teachers (and student).

    Args:
        model: a ``DMT`` algorithm (teachers loaded).
        images: (N, 3, H, W), normalised as the data preprocessor does.
        blocks: per model, how many blocks (spread over the depth, the last included) or
            which block indices (negative from the end).
        pool: ``'tokens'`` (every position on the student grid is a sample) or ``'mean'``.

    Returns ``{'<teacher name>.b<block>': (n, d), ..., 'student.b<block>': ...}``; block
    numbers are 0-based, the last block gives the final (normed) features, the others
    their raw output, as the distillation targets do.
    """
    if pool not in ('tokens', 'mean'):
        raise ValueError(f"pool must be 'tokens' or 'mean', got {pool!r}")
    model.eval()
    device = next(model.buffers(), torch.empty(0)).device
    grid = None
    out = OrderedDict()
    parts: Dict[str, List[torch.Tensor]] = OrderedDict()
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        grid = model._student_grid(x)
        for teacher in model.target_generator.teachers:
            ids = _resolve_blocks(teacher.num_layers, blocks)
            last = teacher.num_layers - 1
            # widths may differ between blocks (SAM: 768-d blocks, 256-d neck): CKA does
            # not mind
            feats = teacher(x, layers=[i for i in ids if i != last])
            for i in ids:
                tokens = feats['patch'] if i == last else feats['layers'][i]
                parts.setdefault(f'{teacher.name}.b{i}', []).append(
                    _pool(tokens, feats['grid'], grid, pool).cpu())
        if include_student:
            backbone = model.backbone
            ids = _resolve_blocks(backbone.num_layers, blocks)
            last = backbone.num_layers - 1
            res = backbone.forward_tokens(x, layers=[i for i in ids if i != last])
            extra = res['num_extra_tokens']
            for i in ids:
                tokens = res['tokens'] if i == last else res['layers'][i]
                parts.setdefault(f'student.b{i}', []).append(
                    _pool(tokens[:, extra:], res['grid'], grid, pool).cpu())
    for name, chunks in parts.items():
        out[name] = torch.cat(chunks)
    return out


def build_dmt(config, checkpoint: Optional[str] = None,
              teacher_checkpoints: Optional[Mapping[str, str]] = None,
              random_teachers: bool = False, device: str = 'cpu', seed: int = 0,
              cfg_options: Optional[Dict] = None):
    """A DMT model from a config (path or ``mmengine.Config``), teachers loaded from the
    config's files (or ``teacher_checkpoints``, or random with ``random_teachers``), the
    student from ``checkpoint`` when given (a DMT Runner checkpoint or the output of
    tools/model_converters/extract_student.py: its ``backbone.*`` tensors, loaded strictly),
    else freshly initialised with ``seed`` ("before distillation")."""
    from mmengine.config import Config

    from . import model_setup
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.model.get('type') != 'DMT':
        raise ValueError(f'teacher CKA needs a DMT pretraining config (model.type=DMT), got '
                         f'{cfg.model.get("type")!r}')
    generator = cfg.model.target_generator
    if random_teachers:
        model_setup.prepare_config(cfg, random_teachers=True)
    elif teacher_checkpoints:
        merged = dict(generator.get('teacher_checkpoints') or {})
        merged.update(teacher_checkpoints)
        generator.teacher_checkpoints = merged
    torch.manual_seed(seed)
    model = model_setup.build_model(cfg, torch.device(device))
    if checkpoint is not None:
        from dmt_mm.checkpoint import safe_torch_load
        state = safe_torch_load(checkpoint)
        state = state.get('state_dict', state) if isinstance(state, dict) else state
        student = {k[len('backbone.'):]: v for k, v in state.items()
                   if k.startswith('backbone.')}
        if not student:
            raise ValueError(f'{checkpoint}: no backbone.* tensors (a DMT checkpoint or the '
                             'output of tools/model_converters/extract_student.py is needed)')
        model.backbone.load_state_dict(student, strict=True)
    return model.eval(), cfg


def load_images(source: Union[str, Sequence[str]], img_size: int,
                mean: Sequence[float], std: Sequence[float],
                max_images: Optional[int] = None) -> torch.Tensor:
    """Images of a folder (searched recursively, sorted) or a list of paths, as the student
    sees them at evaluation: shorter side resized to ``img_size`` (bicubic), centre crop,
    normalised with ``mean`` / ``std`` (0-255, RGB) -> (N, 3, img_size, img_size)."""
    import mmcv
    if isinstance(source, str):
        if not osp.isdir(source):
            raise FileNotFoundError(f'image folder {source!r} does not exist')
        paths = sorted(osp.join(root, f) for root, _, files in os.walk(source) for f in files
                       if f.lower().endswith(IMAGE_EXTENSIONS))
    else:
        paths = list(source)
    if max_images:
        paths = paths[:max_images]
    if len(paths) < 2:
        raise ValueError(f'teacher CKA needs at least 2 images, found {len(paths)} in '
                         f'{source!r} (extensions {IMAGE_EXTENSIONS})')
    out = []
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    for path in paths:
        img = mmcv.imread(path, channel_order='rgb')
        if img is None:
            raise ValueError(f'{path} is not a readable image')
        h, w = img.shape[:2]
        scale = img_size / min(h, w)
        size = (max(img_size, round(w * scale)), max(img_size, round(h * scale)))
        img = mmcv.imresize(img, size, interpolation='bicubic', backend='pillow')
        h, w = img.shape[:2]
        top, left = (h - img_size) // 2, (w - img_size) // 2
        img = img[top:top + img_size, left:left + img_size]
        tensor = torch.from_numpy(img.copy()).permute(2, 0, 1).float()
        out.append((tensor - mean_t) / std_t)
    return torch.stack(out)


def block_features(config, images: Union[str, Sequence[str], torch.Tensor],
                   checkpoint: Optional[str] = None,
                   teacher_checkpoints: Optional[Mapping[str, str]] = None,
                   blocks: Union[int, Sequence[int]] = 4, pool: str = 'tokens',
                   include_student: bool = True, random_teachers: bool = False,
                   max_images: Optional[int] = 32, batch_size: int = 8, device: str = 'cpu',
                   seed: int = 0) -> 'OrderedDict[str, torch.Tensor]':
    """Per-block features of a DMT config's teachers and student on some images.

    Args:
        config: DMT config path (or ``Config``).
        images: an image folder, a list of image paths, or an already normalised
            (N, 3, H, W) tensor; folders and paths are resized / cropped to the student's
            input size and normalised with the config's data preprocessor.
        checkpoint: the student's weights (DMT checkpoint or extracted student); None: a
            freshly initialised student (``seed``), i.e. before distillation.
        teacher_checkpoints: ``{teacher name: path}`` overriding the config's files.
        blocks, pool, include_student, batch_size: see :func:`model_block_features`.
        random_teachers: random frozen teachers (tests only).

    Returns ``{'<teacher>.b<block>' / 'student.b<block>': (n, d)}``, ready for
    :func:`cka_matrix`.
    """
    model, cfg = build_dmt(config, checkpoint, teacher_checkpoints, random_teachers, device,
                           seed)
    if not torch.is_tensor(images):
        dp = cfg.model.data_preprocessor
        size = model.backbone.patch_resolution[0] * \
            model.backbone.patch_embed.projection.kernel_size[0]
        images = load_images(images, size, dp.mean, dp.std, max_images)
    return model_block_features(model, images, blocks, pool, include_student, batch_size)
