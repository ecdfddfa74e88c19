"""mmdet's CocoDataset, refusing annotation files it would silently misread.

mmdet 3.3, for an annotation file that does not fit the config's class list:

* drops every annotation whose category is not a class of ``metainfo.classes`` -- the
  same test drops annotations whose ``category_id`` is not a category of the file at all;
* numbers the classes by the categories it finds, so a class missing from the file shifts
  the labels of all classes after it;
* meets a truncated json with a raw ``JSONDecodeError`` that does not name the file.

``ValidatedCocoDataset`` names each case and the fix instead. ``tools/train.py`` /
``test.py`` use it for every ``CocoDataset`` of an mmdet config (see
``dmt_mm/engine/defaults.py``). Training on a subset of a file's categories on purpose:
``allow_unlisted_categories=True``.
"""
import json
from collections import Counter

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from dmt_mm.errors import DataError


@DATASETS.register_module()
class ValidatedCocoDataset(CocoDataset):
    """``CocoDataset`` plus the checks above (no extra pass over the file)."""

    def __init__(self, *args, allow_unlisted_categories=False, **kwargs):
        self.allow_unlisted_categories = allow_unlisted_categories
        super().__init__(*args, **kwargs)

    def load_data_list(self):
        self._unknown_categories, self._unlisted = [], Counter()
        self._known_category_ids = None
        try:
            data_list = super().load_data_list()
        except json.JSONDecodeError as exc:
            raise DataError(f'{self.ann_file} is not valid JSON ({exc.msg} at character '
                            f'{exc.pos}): a truncated or damaged annotation file. Download '
                            'or create it again.') from None
        if self._unknown_categories:
            bad = self._unknown_categories
            raise DataError(
                f'{self.ann_file}: {len(bad)} annotations have a category_id that is not '
                f'among the categories of the file (annotation id, category_id: {bad[:5]}); '
                f'known ids: {self._known_category_ids[:20]}. Fix the json or add the '
                'categories.')
        if self._unlisted and not self.allow_unlisted_categories:
            counts = ', '.join(f'{name!r} ({n})' for name, n in self._unlisted.most_common(10))
            raise DataError(
                f'{self.ann_file}: {sum(self._unlisted.values())} annotations belong to '
                f'categories that are not in the config\'s class list and would be dropped: '
                f'{counts}. Add them to metainfo.classes (and num_classes), or set '
                'allow_unlisted_categories=True on the dataset to train on the listed classes '
                'only.')
        return data_list

    def parse_data_info(self, raw_data_info):
        cats = self.coco.cats
        if self._known_category_ids is None:  # first image: check the class list once
            self._known_category_ids = sorted(cats)
            names = {c['name'] for c in cats.values()}
            missing = [c for c in self.metainfo['classes'] if c not in names]
            if missing:
                raise DataError(
                    f'{self.ann_file}: the classes {missing} of the config are not categories '
                    f'of the file (its categories: {sorted(names)[:20]}); mmdet would number '
                    'the classes by the categories it finds and shift the labels after them. '
                    'Fix metainfo.classes or the file.')
        for ann in raw_data_info['raw_ann_info']:
            if ann['category_id'] not in cats:
                self._unknown_categories.append((ann['id'], ann['category_id']))
            elif ann['category_id'] not in self.cat_ids and not ann.get('ignore', False):
                self._unlisted[cats[ann['category_id']]['name']] += 1
        return super().parse_data_info(raw_data_info)
