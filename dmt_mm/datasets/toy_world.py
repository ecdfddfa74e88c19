"""The toy world: a deterministic, procedurally drawn dataset for CPU runs of every task.

One generator writes, from one seed, the same scenes in the formats of the real benchmarks
(``ToyWorldSpec.version`` 1, the small world of the unit tests):

* ``images/{train,val}/*.png`` scenes of textured, coloured, overlapping shapes;
* ``annotations/instances_{train,val}.json`` COCO detection/instance json (boxes, polygons
  -- RLE where the visible part has holes -- of the *visible* part of each object, areas,
  ``iscrowd=0``);
* ``seg/{train,val}/*.png`` ADE20K-style label maps: 0 = background ("other", ignored
  with ``reduce_zero_label=True``), ``k`` = shape class ``k-1``;
* ``cls/{train,val}/<class>/*.png`` an image-folder classification split, one object per
  image in its class's (jittered) colour, as in the scenes (mmpretrain ``CustomDataset``
  layout). With shape as the only cue, 24 images a class stay near chance for a from-scratch
  toy ViT; the colour makes the split learnable in a CPU minute.

Version 2 (the study's world, :data:`STUDY_WORLD`) is a *factorised* world: every object
draws its category (shape), colour, texture and size independently, objects occlude one
another in a known depth order, and the background carries random clutter. Besides the
version-1 files it writes one label map per factor, ``factors/<factor>/{train,val}/*.png``
(0 = background, ``k`` = value ``k - 1`` of :data:`FACTORS`), and, for the single-object
split, one annotation file per factor, ``cls/meta/{train,val}_<factor>.txt`` (mmpretrain
``ann_file`` lines ``<category>/NNNN.png <label>``). Colour no longer follows the category,
so no single cue names an object: a probe of one factor measures what a model knows about
that factor. Two combined maps are the training targets of the controlled teachers of the
study (docs/pipeline.md): ``appearance`` (colour x texture) and ``geometry`` (size x depth).

Nothing is downloaded; the output depends only on the arguments.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'star', 'cross', 'ring')
PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25), (145, 30, 180),
           (245, 130, 48)]


@dataclass
class ToyWorldSpec:
    """Sizes of one toy world; the defaults make a set that trains in minutes on 2 cores."""
    num_train: int = 48
    num_val: int = 16
    image_size: int = 128
    max_objects: int = 4
    cls_per_class_train: int = 24
    cls_per_class_val: int = 8
    cls_image_size: int = 64
    seed: int = 0
    version: int = 1


def _shape_mask(kind, size, center, radius, angle):
    """Binary mask (uint8) of one shape of ``kind`` drawn on a ``size`` x ``size`` canvas."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = center
    if kind == 'circle':
        cv2.circle(mask, (cx, cy), radius, 1, -1)
    elif kind == 'ring':
        cv2.circle(mask, (cx, cy), radius, 1, -1)
        cv2.circle(mask, (cx, cy), max(radius // 2, 1), 0, -1)
    else:
        if kind == 'square':
            pts = [(np.cos(a), np.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]
        elif kind == 'triangle':
            pts = [(np.cos(a), np.sin(a)) for a in -np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
        elif kind == 'star':
            tip = [1.0 if i % 2 == 0 else 0.45 for i in range(10)]  # outer, inner corners
            pts = [(tip[i] * np.cos(a), tip[i] * np.sin(a))
                   for i, a in enumerate(-np.pi / 2 + np.arange(10) * np.pi / 5)]
        elif kind == 'cross':
            w = 0.35
            pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                   (-1, w), (-1, -w), (-w, -w)]
        else:
            raise ValueError(f'unknown shape {kind!r}; known: {CLASSES}')
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        poly = (np.array(pts) @ rot.T) * radius + np.array([cx, cy])
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask


def _texture(rng, size, color):
    """An HxWx3 uint8 fill: flat, striped, checkered or noisy variations of ``color``."""
    base = np.array(color, np.float32)[None, None, :]
    yy, xx = np.mgrid[0:size, 0:size]
    kind = rng.integers(4)
    if kind == 0:
        mod = np.ones((size, size), np.float32)
    elif kind == 1:
        period = rng.integers(4, 9)
        mod = 0.65 + 0.35 * (((xx + yy) // period) % 2)
    elif kind == 2:
        period = rng.integers(4, 9)
        mod = 0.65 + 0.35 * (((xx // period) + (yy // period)) % 2)
    else:
        mod = 0.75 + 0.25 * rng.random((size, size))
    return np.clip(base * mod[..., None], 0, 255).astype(np.uint8)


def _background(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.integers(0, 90, 3), rng.integers(0, 90, 3)
    grad = (1 - xx)[..., None] * c0 + xx[..., None] * c1 + 20 * yy[..., None]
    noise = rng.normal(0, 6, (size, size, 3))
    return np.clip(grad + noise, 0, 255).astype(np.uint8)


def _jitter_color(rng, class_id):
    return tuple(int(np.clip(c + rng.integers(-35, 36), 0, 255)) for c in PALETTE[class_id])


def draw_scene(rng, size, max_objects):
    """One scene: image (HxWx3 RGB), semantic map (0 = bg, k = class k-1), object list."""
    image = _background(rng, size)
    semantic = np.zeros((size, size), np.uint8)
    instance = np.zeros((size, size), np.int32)  # 0 = none, i+1 = object i (painter's order)
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_id = int(rng.integers(len(CLASSES)))
        radius = int(rng.integers(size // 10, size // 4))
        center = tuple(int(v) for v in rng.integers(radius, size - radius, 2))
        mask = _shape_mask(CLASSES[class_id], size, center, radius, float(rng.uniform(0, np.pi)))
        fill = _texture(rng, size, _jitter_color(rng, class_id))
        image[mask > 0] = fill[mask > 0]
        semantic[mask > 0] = class_id + 1
        instance[mask > 0] = len(objects) + 1
        objects.append(class_id)
    visible = []
    for idx, class_id in enumerate(objects):
        mask = (instance == idx + 1).astype(np.uint8)
        if mask.sum() >= 16:  # fully or almost fully occluded objects are not annotated
            visible.append((class_id, mask))
    return image, semantic, visible


# ---------------------------------------------------------------- version 2: factorised
COLOURS = ('red', 'orange', 'yellow', 'green', 'blue', 'purple')
COLOUR_RGB = ((215, 45, 45), (240, 135, 30), (230, 210, 45), (45, 165, 70), (45, 95, 215),
              (150, 55, 190))
TEXTURES = ('flat', 'stripes', 'checker', 'noise')
SIZES = ('small', 'medium', 'large')
# depth order of the visible object: how many annotated objects it lies on top of
DEPTHS = ('on nothing', 'on one object', 'on two or more')
FACTORS = dict(category=CLASSES, colour=COLOURS, texture=TEXTURES, size=SIZES, depth=DEPTHS)
# the controlled teachers' targets: one label per (colour, texture) / (size, depth) pair
FACTORS['appearance'] = tuple(f'{c} {t}' for c in COLOURS for t in TEXTURES)
FACTORS['geometry'] = tuple(f'{s}, {d}' for s in SIZES for d in DEPTHS)
# object radius per size, as fractions of the image side (scenes / single-object images).
# Even a small object spans two patches of 16 px at the resolution the study's models see:
# a supervised toy ViT trained from scratch on the single-object split reached 43% top-1 in
# 800 iterations with these sizes, and stayed at chance (24%, 6 categories) when a small
# object fitted in one patch.
_RADII = dict(scene=((0.10, 0.125), (0.14, 0.165), (0.19, 0.22)),
              single=((0.22, 0.27), (0.29, 0.33), (0.35, 0.40)))


@dataclass
class ToyObject:
    """The factors of one object (indices into :data:`FACTORS`) and its full mask."""
    category: int
    colour: int
    texture: int
    size: int
    mask: np.ndarray
    depth: int = 0


def _texture_v2(rng, size, colour, texture):
    """HxWx3 uint8 fill of one texture kind in a jittered ``colour``: the kinds differ in
    structure (flat, stripes, checker, pixel noise), never in hue."""
    base = np.clip(np.array(colour, np.float32) + rng.integers(-20, 21, 3), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size]
    kind = TEXTURES[texture]
    if kind == 'flat':
        mod = np.full((size, size), 0.9, np.float32)
    elif kind == 'stripes':
        period = int(rng.integers(5, 9))
        along = xx + yy if rng.integers(2) else xx - yy
        mod = 0.55 + 0.45 * ((along // period) % 2)
    elif kind == 'checker':
        period = int(rng.integers(4, 7))
        mod = 0.55 + 0.45 * (((xx // period) + (yy // period)) % 2)
    else:
        mod = 0.5 + 0.5 * rng.random((size, size))
    return np.clip(base * mod[..., None], 0, 255).astype(np.uint8)


def _cluttered_background(rng, size):
    """The version-1 gradient with 0-11 desaturated strokes and blobs on it."""
    image = _background(rng, size)
    for _ in range(int(rng.integers(0, 12))):
        grey = int(rng.integers(50, 170))
        colour = tuple(int(np.clip(grey + rng.integers(-15, 16), 0, 255)) for _ in range(3))
        p0 = tuple(int(v) for v in rng.integers(0, size, 2))
        if rng.integers(2):
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(image, p0, p1, colour, int(rng.integers(1, 3)))
        else:
            axes = tuple(int(v) for v in rng.integers(1, max(size // 16, 2) + 1, 2))
            cv2.ellipse(image, p0, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    return image


def _draw_object(rng, image, size, kind, category, colour, texture, size_bin):
    lo, hi = _RADII[kind][size_bin]
    radius = max(int(round(rng.uniform(lo, hi) * size)), 3)
    center = tuple(int(v) for v in rng.integers(radius, size - radius, 2))
    mask = _shape_mask(CLASSES[category], size, center, radius, float(rng.uniform(0, np.pi)))
    fill = _texture_v2(rng, size, COLOUR_RGB[colour], texture)
    image[mask > 0] = fill[mask > 0]
    return ToyObject(category, colour, texture, size_bin, mask)


def _random_factors(rng, category=None):
    return (int(rng.integers(len(CLASSES))) if category is None else category,
            int(rng.integers(len(COLOURS))), int(rng.integers(len(TEXTURES))),
            int(rng.integers(len(SIZES))))


def depth_orders(masks, annotated):
    """Depth label of each annotated object (painter's order: later objects lie on top):
    how many annotated objects drawn before it its full mask overlaps, capped at
    ``len(DEPTHS) - 1``."""
    return {i: min(sum(1 for j in annotated if j < i and (masks[j] & masks[i]).any()),
                   len(DEPTHS) - 1) for i in annotated}


def draw_scene_v2(rng, size, max_objects):
    """A version-2 scene: image, one label map per factor of :data:`FACTORS` (0 =
    background) and the visible objects (``ToyObject`` with the visible mask)."""
    image = _cluttered_background(rng, size)
    objects, order = [], np.zeros((size, size), np.int32)  # order: painter's index + 1
    for _ in range(int(rng.integers(1, max_objects + 1))):
        obj = _draw_object(rng, image, size, 'scene', *_random_factors(rng))
        objects.append(obj)
        order[obj.mask > 0] = len(objects)
    visible = []
    for index, obj in enumerate(objects):
        seen = (order == index + 1).astype(np.uint8)
        if seen.sum() >= 16:  # fully or almost fully occluded objects are not annotated
            visible.append((index, obj, seen))
    depths = depth_orders([o.mask for o in objects], [index for index, _, _ in visible])
    maps = {name: np.zeros((size, size), np.uint8) for name in FACTORS}
    for index, obj, seen in visible:
        obj.depth = depths[index]
        values = dict(category=obj.category, colour=obj.colour, texture=obj.texture,
                      size=obj.size, depth=obj.depth,
                      appearance=obj.colour * len(TEXTURES) + obj.texture,
                      geometry=obj.size * len(DEPTHS) + obj.depth)
        for name, value in values.items():
            maps[name][seen > 0] = value + 1
    return image, maps, [ToyObject(o.category, o.colour, o.texture, o.size, seen, o.depth)
                         for _, o, seen in visible]


def draw_single_v2(rng, size, category):
    """A version-2 single-object image of ``category`` and its factor labels."""
    image = _cluttered_background(rng, size)
    obj = _draw_object(rng, image, size, 'single', *_random_factors(rng, category))
    return image, dict(category=obj.category, colour=obj.colour, texture=obj.texture,
                       size=obj.size)


def mask_to_coco(mask):
    """COCO bbox [x, y, w, h], segmentation and area of a binary mask.

    The segmentation is a polygon list, as in COCO, unless the visible part has holes (a
    ring, or an object seen through by an occluder's cut-out), which polygons cannot
    express: then it is compressed RLE, which pycocotools and mmdet read as well.
    """
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    has_holes = hierarchy is not None and (hierarchy[0][:, 3] >= 0).any()
    if has_holes:
        from pycocotools import mask as mask_utils
        rle = mask_utils.encode(np.asfortranarray(mask))
        segmentation = dict(size=[int(v) for v in rle['size']], counts=rle['counts'].decode())
    else:
        segmentation = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], segmentation, float(mask.sum())


def _write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def generate_toy_world(root, spec=None):
    """Write the toy world under ``root`` (idempotent: a finished world is reused).

    Returns the path of ``root``. A ``DONE`` marker written last means a world interrupted
    half-way is regenerated rather than silently used.
    """
    spec = spec or ToyWorldSpec()
    if spec.version not in (1, 2):
        raise ValueError(f'ToyWorldSpec.version={spec.version}: choose 1 or 2')
    marker = osp.join(root, 'DONE')
    signature = json.dumps(spec.__dict__, sort_keys=True)
    if osp.exists(marker) and open(marker).read() == signature:
        return root
    if osp.exists(marker):
        os.remove(marker)  # another world: it is rewritten, and unusable until finished
    rng = np.random.default_rng(spec.seed)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    for split, count in (('train', spec.num_train), ('val', spec.num_val)):
        images, annotations = [], []
        for index in range(count):
            name = f'{split}_{index:05d}.png'
            if spec.version == 1:
                image, semantic, objects = draw_scene(rng, spec.image_size, spec.max_objects)
                maps = dict(category=semantic)
            else:
                image, maps, visible = draw_scene_v2(rng, spec.image_size, spec.max_objects)
                objects = [(o.category, o.mask) for o in visible]
            _write_png(osp.join(root, 'images', split, name), image)
            for factor, label in maps.items():
                folder = 'seg' if factor == 'category' else osp.join('factors', factor)
                _write_png(osp.join(root, folder, split, name), label)
            images.append(dict(id=index + 1, file_name=name, width=spec.image_size,
                               height=spec.image_size))
            for class_id, mask in objects:
                bbox, segmentation, area = mask_to_coco(mask)
                annotations.append(dict(id=len(annotations) + 1, image_id=index + 1,
                                        category_id=class_id + 1, bbox=bbox,
                                        segmentation=segmentation, area=area, iscrowd=0))
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
        per_class = spec.cls_per_class_train if split == 'train' else spec.cls_per_class_val
        _write_single_object_split(root, split, per_class, spec, rng)
    with open(marker, 'w') as f:
        f.write(signature)
    return root


def _write_single_object_split(root, split, per_class, spec, rng):
    """``cls/<split>/<category>/NNNN.png``; version 2 adds ``cls/meta/<split>_<factor>.txt``."""
    size = spec.cls_image_size
    lines = {factor: [] for factor in ('category', 'colour', 'texture', 'size')}
    for class_id, name in enumerate(CLASSES):
        for index in range(per_class):
            if spec.version == 1:
                image = _background(rng, size)
                radius = int(rng.integers(size // 5, size // 3))
                center = tuple(int(v) for v in rng.integers(radius, size - radius, 2))
                mask = _shape_mask(name, size, center, radius, float(rng.uniform(0, np.pi)))
                fill = _texture(rng, size, _jitter_color(rng, class_id))
                image[mask > 0] = fill[mask > 0]
            else:
                image, labels = draw_single_v2(rng, size, class_id)
                for factor, label in labels.items():
                    lines[factor].append(f'{name}/{index:04d}.png {label}')
            _write_png(osp.join(root, 'cls', split, name, f'{index:04d}.png'), image)
    if spec.version == 2:
        os.makedirs(osp.join(root, 'cls', 'meta'), exist_ok=True)
        for factor, factor_lines in lines.items():
            with open(osp.join(root, 'cls', 'meta', f'{split}_{factor}.txt'), 'w') as f:
                f.write('\n'.join(factor_lines) + '\n')


# The study's world (tools/run_pipeline.py): thousands of scenes, so that a few hundred
# iterations of pretraining see most images about twice, and 3000 single-object validation
# images, so that the test-set sampling error of a probe's top-1 stays below one point
# (binomial standard error sqrt(p (1 - p) / 3000) <= 0.92 points; with 600 images it reached
# 2 points, as large as the seed std the study measured). The validation split is drawn
# last, so its size changes no other image.
STUDY_WORLD = ToyWorldSpec(version=2, num_train=2000, num_val=200, max_objects=5,
                           cls_per_class_train=300, cls_per_class_val=500)
