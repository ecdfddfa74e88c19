"""mmseg's BaseSegDataset over the toy world's ADE-style label maps (generated on first use)."""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .prepare import ensure_toy_world
from .toy_world import CLASSES, PALETTE


@DATASETS.register_module()
class ToyWorldSegDataset(BaseSegDataset):
    """Label 0 is background ("other"), dropped by ``reduce_zero_label`` as in ADE20K."""
    METAINFO = dict(classes=CLASSES, palette=PALETTE)

    def __init__(self, *args, toy_world=None, img_suffix='.png', seg_map_suffix='.png',
                 reduce_zero_label=True, **kwargs):
        ensure_toy_world(kwargs['data_root'], toy_world)
        super().__init__(*args, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
