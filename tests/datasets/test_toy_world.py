"""The factorised toy world (version 2): deterministic, every factor map consistent with the
COCO masks and with one value per object, the depth order by hand, the labels per factor
of the single-object split, factors drawn independently of the category, and the dataset
classes reading a factor."""
import json
import os.path as osp
from collections import Counter

import cv2
import numpy as np
import pytest

from dmt_mm.datasets.toy_world import (
    CLASSES,
    COLOURS,
    FACTORS,
    ToyWorldSpec,
    depth_orders,
    generate_toy_world,
)

SPEC = ToyWorldSpec(version=2, num_train=12, num_val=4, max_objects=5, cls_per_class_train=8,
                    cls_per_class_val=2)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy_v2') / 'data' / 'toy_world'
    generate_toy_world(str(root), SPEC)
    return root


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_v2_world_is_deterministic(world, tmp_path):
    again = tmp_path / 'again'
    generate_toy_world(str(again), SPEC)
    for rel in ('images/train/train_00003.png', 'factors/depth/train/train_00003.png',
                'factors/appearance/val/val_00001.png', 'annotations/instances_train.json',
                f'cls/val/{CLASSES[4]}/0001.png', 'cls/meta/train_colour.txt'):
        assert (world / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_factor_maps_agree_with_the_coco_masks(world):
    from pycocotools.coco import COCO
    coco = COCO(str(world / 'annotations' / 'instances_train.json'))
    for image in coco.loadImgs(coco.getImgIds()):
        name = image['file_name']
        maps = {f: read(world / ('seg' if f == 'category' else f'factors/{f}') / 'train' / name)
                for f in FACTORS}
        background = maps['category'] == 0
        for factor, label in maps.items():
            assert ((label == 0) == background).all(), factor  # 0 = background everywhere
            assert label.max() <= len(FACTORS[factor]), factor
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'])):
            mask = coco.annToMask(ann).astype(bool)
            if ann['area'] < 50:  # polygons of a few pixels rasterise loosely
                continue
            assert (maps['category'][mask] == ann['category_id']).mean() > 0.9
            # an object has one value of each factor (the visible pixels of one instance)
            values = {f: Counter(label[mask].tolist()).most_common(1)[0][0]
                      for f, label in maps.items()}
            colour, texture = values['colour'] - 1, values['texture'] - 1
            size, depth = values['size'] - 1, values['depth'] - 1
            assert values['appearance'] - 1 == colour * len(FACTORS['texture']) + texture
            assert values['geometry'] - 1 == size * len(FACTORS['depth']) + depth


def test_depth_order_by_hand():
    """Three squares painted in order 0, 1, 2: 1 overlaps 0, 2 overlaps 0 and 1; a fourth,
    apart, overlaps nothing; object 3 is not annotated (fully hidden) and is not counted."""
    def square(y, x, s=10):
        mask = np.zeros((40, 40), np.uint8)
        mask[y:y + s, x:x + s] = 1
        return mask
    masks = [square(0, 0), square(5, 5), square(8, 8), square(9, 9, 2), square(30, 30)]
    assert depth_orders(masks, [0, 1, 2, 4]) == {0: 0, 1: 1, 2: 2, 4: 0}
    masks.append(square(0, 0, 20))  # on top of 0, 1, 2 (and the hidden 3): capped at 2
    assert depth_orders(masks, [0, 1, 2, 4, 5])[5] == len(FACTORS['depth']) - 1


def test_single_object_split_is_labelled_by_every_factor(world):
    for split, per_class in (('train', SPEC.cls_per_class_train), ('val', SPEC.cls_per_class_val)):
        lines = {f: (world / 'cls' / 'meta' / f'{split}_{f}.txt').read_text().split('\n')[:-1]
                 for f in ('category', 'colour', 'texture', 'size')}
        assert all(len(v) == per_class * len(CLASSES) for v in lines.values())
        for line in lines['category']:
            path, label = line.split()
            assert path.split('/')[0] == CLASSES[int(label)]
            assert (world / 'cls' / split / path).is_file()
        for factor, factor_lines in lines.items():
            assert [line.split()[0] for line in factor_lines] == \
                [line.split()[0] for line in lines['category']]
            assert all(0 <= int(line.split()[1]) < len(FACTORS[factor]) for line in factor_lines)


@pytest.mark.slow
def test_colour_is_drawn_independently_of_the_category(tmp_path):
    """Version 1 paints each category in its own colour; version 2 does not: every category
    comes in many colours (600 single-object images)."""
    root = tmp_path / 'w'
    generate_toy_world(str(root), ToyWorldSpec(version=2, num_train=1, num_val=1,
                                               cls_per_class_train=100, cls_per_class_val=1))
    pairs = [(line.split()[0].split('/')[0], int(line.split()[1])) for line in
             (root / 'cls' / 'meta' / 'train_colour.txt').read_text().split('\n')[:-1]]
    for category in CLASSES:
        counts = Counter(colour for c, colour in pairs if c == category)
        assert len(counts) == len(COLOURS) and max(counts.values()) < 35, (category, counts)


@pytest.mark.slow
def test_datasets_read_a_factor(world):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS as CLS
    from mmseg.registry import DATASETS as SEG

    import dmt_mm.datasets.toy_cls  # noqa: F401
    import dmt_mm.datasets.toy_seg  # noqa: F401
    init_default_scope('mmpretrain')
    colour = CLS.build(dict(type='ToyWorldImageFolder', data_root=str(world),
                            data_prefix='cls/val', factor='colour', pipeline=[]))
    expected = [int(line.split()[1]) for line in
                (world / 'cls' / 'meta' / 'val_colour.txt').read_text().split('\n')[:-1]]
    assert [colour.get_data_info(i)['gt_label'] for i in range(len(colour))] == expected
    assert colour.metainfo['classes'] == COLOURS
    # every factor's label beside the folder's (category), matched by image, not by line
    both = CLS.build(dict(type='ToyWorldImageFolder', data_root=str(world),
                          data_prefix='cls/val', extra_factors=['colour', 'size'], pipeline=[]))
    by_path = {colour.get_data_info(i)['img_path']: colour.get_data_info(i)['gt_label']
               for i in range(len(colour))}
    infos = [both.get_data_info(i) for i in range(len(both))]
    assert [i['gt_label_colour'] for i in infos] == [by_path[i['img_path']] for i in infos]
    folders = [osp.basename(osp.dirname(i['img_path'])) for i in infos]
    assert [both.metainfo['classes'][i['gt_label']] for i in infos] == folders
    assert {i['gt_label_size'] for i in infos} <= set(range(len(FACTORS['size'])))
    init_default_scope('mmseg')
    depth = SEG.build(dict(type='ToyWorldSegDataset', data_root=str(world),
                           data_prefix=dict(img_path='images/val', seg_map_path='seg/val'),
                           factor='depth', pipeline=[dict(type='LoadAnnotations',
                                                          reduce_zero_label=True)]))
    sample = depth[0]
    raw = read(world / 'factors' / 'depth' / 'val' / 'val_00000.png').astype(int)
    np.testing.assert_array_equal(sample['gt_seg_map'], np.where(raw == 0, 255, raw - 1))
    assert depth.metainfo['classes'] == FACTORS['depth']


def test_a_factor_of_a_version_1_world_is_refused(tmp_path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import dmt_mm.datasets.toy_cls  # noqa: F401
    root = tmp_path / 'v1'
    generate_toy_world(str(root), ToyWorldSpec(num_train=2, num_val=1, cls_per_class_train=1,
                                               cls_per_class_val=1))
    init_default_scope('mmpretrain')
    with pytest.raises(FileNotFoundError, match='version-2 toy worlds only'):
        DATASETS.build(dict(type='ToyWorldImageFolder', data_root=str(root),
                            data_prefix='cls/val', factor='colour'))
    with pytest.raises(FileNotFoundError, match='version-2 toy worlds only'):
        DATASETS.build(dict(type='ToyWorldImageFolder', data_root=str(root),
                            data_prefix='cls/val', extra_factors=['size']))
    assert json.loads((root / 'DONE').read_text())['version'] == 1
