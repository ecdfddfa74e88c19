"""mmpretrain's CustomDataset (image folders) over the toy world (generated on first use)."""
import os.path as osp

from mmengine.fileio import list_from_file
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from dmt_mm.errors import ConfigError, DataError

from .prepare import ensure_toy_world
from .toy_world import FACTORS


@DATASETS.register_module()
class ToyWorldImageFolder(CustomDataset):
    """``cls/{split}/<class>/*.png`` with labels, or any image folder of the toy world
    (e.g. ``images/train``) without labels for self-supervised pretraining.

    ``factor`` (version-2 worlds: 'category', 'colour', 'texture' or 'size') labels the
    same images by that factor instead of by folder: ``ann_file`` becomes
    ``cls/meta/<split>_<factor>.txt`` and the classes the factor's values.

    ``extra_factors`` gives every image the labels of more factors besides ``gt_label``, as
    ``gt_label_<factor>`` (pack them with ``PackInputs(algorithm_keys=...)``): one pass of a
    frozen-feature probe then scores every factor (``KNNClassifier(extra_labels=...)``)."""

    def __init__(self, *args, toy_world=None, factor=None, extra_factors=(), **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        if isinstance(extra_factors, str):
            raise ConfigError(f'extra_factors={extra_factors!r}: give a list of factors, '
                              f'e.g. [{extra_factors!r}]')
        self.extra_factors = tuple(extra_factors)
        prefix = kwargs.get('data_prefix', '')
        prefix = prefix.get('img_path', '') if isinstance(prefix, dict) else prefix
        self._split = osp.basename(osp.normpath(prefix or '.'))
        if factor is not None:
            kwargs['ann_file'] = self._factor_file(kwargs['data_root'], factor)
            kwargs['metainfo'] = dict(classes=FACTORS[factor])
        for extra in self.extra_factors:
            self._factor_file(kwargs['data_root'], extra)  # checked before loading
        super().__init__(*args, **kwargs)

    def _factor_file(self, data_root, factor):
        """``cls/meta/<split>_<factor>.txt`` (relative to ``data_root``), checked."""
        if factor not in ('category', 'colour', 'texture', 'size'):
            raise ConfigError(f'factor {factor!r}: the single-object split is labelled '
                              "by 'category', 'colour', 'texture' or 'size'")
        ann_file = osp.join('cls', 'meta', f'{self._split}_{factor}.txt')
        if not osp.isfile(osp.join(data_root, ann_file)):
            raise FileNotFoundError(
                f'{ann_file} is not in {data_root}: labels per factor exist in '
                'version-2 toy worlds only (ToyWorldSpec(version=2))')
        return ann_file

    def load_data_list(self):
        data_list = super().load_data_list()
        for extra in self.extra_factors:
            ann_file = osp.join(self.data_root, self._factor_file(self.data_root, extra))
            labels = {}
            for line in list_from_file(ann_file):
                path, label = line.strip().rsplit(' ', 1)
                labels[osp.normpath(osp.join(self.img_prefix, path))] = int(label)
            for info in data_list:
                path = osp.normpath(info['img_path'])
                if path not in labels:
                    raise DataError(f'{path} has no line in {ann_file}: regenerate the toy '
                                    'world (delete its folder)')
                info[f'gt_label_{extra}'] = labels[path]
        return data_list
