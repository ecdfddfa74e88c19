"""mmpretrain's CustomDataset (image folders) over the toy world (generated on first use)."""
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from .prepare import ensure_toy_world


@DATASETS.register_module()
class ToyWorldImageFolder(CustomDataset):
    """``cls/{split}/<class>/*.png`` with labels, or any image folder of the toy world
    (e.g. ``images/train``) without labels for self-supervised pretraining."""

    def __init__(self, *args, toy_world=None, **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        super().__init__(*args, **kwargs)
