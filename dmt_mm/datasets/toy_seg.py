"""mmseg's BaseSegDataset over the toy world's ADE-style label maps (generated on first use)."""
import os.path as osp

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .prepare import ensure_toy_world
from .toy_world import CLASSES, FACTORS, PALETTE


@DATASETS.register_module()
class ToyWorldSegDataset(BaseSegDataset):
    """Label 0 is background ("other"), dropped by ``reduce_zero_label`` as in ADE20K.

    ``factor`` (version-2 worlds, a key of ``FACTORS`` other than 'category') reads that
    factor's label maps, ``factors/<factor>/<split>``, in place of ``seg_map_path``'s
    category maps; the classes become the factor's values."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, *args, toy_world=None, factor=None, img_suffix='.png',
                 seg_map_suffix='.png', reduce_zero_label=True, **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        if factor not in (None, 'category'):
            if factor not in FACTORS:
                raise ValueError(f'factor={factor!r}: choose one of {sorted(FACTORS)}')
            prefix = dict(kwargs['data_prefix'])
            split = osp.basename(osp.normpath(prefix['seg_map_path']))
            prefix['seg_map_path'] = osp.join('factors', factor, split)
            if not osp.isdir(osp.join(kwargs['data_root'], prefix['seg_map_path'])):
                raise FileNotFoundError(
                    f'{prefix["seg_map_path"]} is not in {kwargs["data_root"]}: label maps '
                    'per factor exist in version-2 toy worlds only (ToyWorldSpec(version=2))')
            kwargs['data_prefix'] = prefix
            kwargs['metainfo'] = dict(classes=FACTORS[factor], palette=[
                tuple(int(c) for c in np.random.default_rng(i).integers(0, 256, 3))
                for i in range(len(FACTORS[factor]))])
        super().__init__(*args, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes=None):
        """A factor's own classes are not a subset of the categories (mmseg's check for
        a class remapping): its labels are read as they are."""
        if new_classes is not None and tuple(new_classes) in {
                tuple(v) for k, v in FACTORS.items() if k != 'category'}:
            return None
        return super().get_label_map(new_classes)
