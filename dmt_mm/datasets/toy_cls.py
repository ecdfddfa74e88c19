"""mmpretrain's CustomDataset (image folders) over the toy world (generated on first use)."""
import os.path as osp

from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from .prepare import ensure_toy_world
from .toy_world import FACTORS


@DATASETS.register_module()
class ToyWorldImageFolder(CustomDataset):
    """``cls/{split}/<class>/*.png`` with labels, or any image folder of the toy world
    (e.g. ``images/train``) without labels for self-supervised pretraining.

    ``factor`` (version-2 worlds: 'category', 'colour', 'texture' or 'size') labels the
    same images by that factor instead of by folder: ``ann_file`` becomes
    ``cls/meta/<split>_<factor>.txt`` and the classes the factor's values."""

    def __init__(self, *args, toy_world=None, factor=None, **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        if factor is not None:
            if factor not in ('category', 'colour', 'texture', 'size'):
                raise ValueError(f'factor={factor!r}: the single-object split is labelled '
                                 "by 'category', 'colour', 'texture' or 'size'")
            split = osp.basename(osp.normpath(kwargs['data_prefix']))
            kwargs['ann_file'] = osp.join('cls', 'meta', f'{split}_{factor}.txt')
            kwargs['metainfo'] = dict(classes=FACTORS[factor])
            if not osp.isfile(osp.join(kwargs['data_root'], kwargs['ann_file'])):
                raise FileNotFoundError(
                    f'{kwargs["ann_file"]} is not in {kwargs["data_root"]}: labels per '
                    'factor exist in version-2 toy worlds only (ToyWorldSpec(version=2))')
        super().__init__(*args, **kwargs)
