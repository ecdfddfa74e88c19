"""mmdet's CocoDataset over the generated toy world (generated on first use)."""
from mmdet.registry import DATASETS

from .coco import ValidatedCocoDataset
from .prepare import ensure_toy_world
from .toy_world import CLASSES, PALETTE


@DATASETS.register_module()
class ToyWorldCocoDataset(ValidatedCocoDataset):
    """The real ``CocoDataset`` (same parsing, same CocoMetric) reading the toy world's
    ``annotations/instances_{split}.json``; ``toy_world`` holds ``ToyWorldSpec`` fields."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, *args, toy_world=None, **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        super().__init__(*args, **kwargs)
