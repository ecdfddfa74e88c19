"""mmdet's CocoDataset, refusing annotations whose category is not in the file.

mmdet 3.3 silently drops an annotation whose ``category_id`` is not a category of the json
(the same test that legitimately drops categories outside ``metainfo.classes``), so a broken
annotation file trains on fewer objects without a word. This subclass names them instead.
"""
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class ValidatedCocoDataset(CocoDataset):
    """``CocoDataset`` plus the category check (no extra pass over the file)."""

    def load_data_list(self):
        self._unknown_categories = []
        data_list = super().load_data_list()
        if self._unknown_categories:
            bad = self._unknown_categories
            raise ValueError(
                f'{self.ann_file}: {len(bad)} annotations have a category_id that is not '
                f'among the categories of the file (annotation id, category_id: {bad[:5]}); '
                f'known ids: {self._known_category_ids[:20]}. Fix the json or add the '
                'categories.')
        return data_list

    def parse_data_info(self, raw_data_info):
        known = self.coco.cats
        self._known_category_ids = sorted(known)
        self._unknown_categories += [(a['id'], a['category_id'])
                                     for a in raw_data_info['raw_ann_info']
                                     if a['category_id'] not in known]
        return super().parse_data_info(raw_data_info)
