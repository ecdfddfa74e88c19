"""Bad data, met early and named: corrupt images, labels out of range.

* ``LoadImageOrSkip``: mmcv's ``LoadImageFromFile`` with a policy for unreadable files
  (empty, truncated, not an image): ``on_corrupt='skip'`` logs a warning with the file and
  a running count and returns None (mmengine's dataset then fetches another sample);
  ``'error'`` raises naming the file.
* ``CheckLabelRange``: a pipeline step that raises, naming the file, when a semantic label
  map holds values that are neither a class index nor the ignore index -- otherwise
  training fails far away (an IndexError, on GPU an opaque device-side assert) and testing
  silently reports another mIoU.
(Annotations of unknown COCO categories: see ``ValidatedCocoDataset`` in ``coco.py``.)

``tools/train.py`` / ``test.py`` put both into every pipeline (see
``dmt_mm/engine/defaults.py``): skipping in training, failing in evaluation.
"""
import os.path as osp
from collections import Counter

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

from dmt_mm.errors import DataError

CORRUPT_COUNTS = Counter()


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):

    def __init__(self, on_corrupt='skip', **kwargs):
        if on_corrupt not in ('skip', 'error'):
            raise ValueError(f"on_corrupt must be 'skip' or 'error', got {on_corrupt!r}")
        super().__init__(**kwargs)
        self.on_corrupt = on_corrupt

    def transform(self, results):
        try:
            out = super().transform(results)
            if out is not None and out.get('img') is not None:
                return out
            problem = 'decoded to nothing'
        except Exception as exc:  # mmcv raises assorted errors for truncated/corrupt files
            problem = f'{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}'
        path = results.get('img_path')
        if isinstance(path, str) and osp.isfile(path) and osp.getsize(path) == 0:
            problem = 'the file is empty (0 bytes)'
        if self.on_corrupt == 'error':
            raise DataError(f'cannot read image {path!r} ({problem}). Replace or remove the '
                            "file, or set on_corrupt='skip' in LoadImageOrSkip to skip such "
                            'files.')
        CORRUPT_COUNTS['skipped'] += 1
        print_log(f'skipping unreadable image {path!r} ({problem}); '
                  f'{CORRUPT_COUNTS["skipped"]} skipped so far in this process',
                  logger='current', level=30)
        return None


@TRANSFORMS.register_module()
class CheckLabelRange(BaseTransform):
    """Place after the annotation loading (and ``reduce_zero_label``) step."""

    def __init__(self, num_classes, ignore_index=255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results):
        seg = results.get('gt_seg_map')
        if seg is not None and seg.size and int(seg.max()) >= self.num_classes:
            values = np.unique(seg)
            bad = values[(values >= self.num_classes) & (values != self.ignore_index)]
            if bad.size:
                raise DataError(
                    f'label map {results.get("seg_map_path")!r} holds values {bad.tolist()} '
                    f'beyond the {self.num_classes} classes (valid: 0..{self.num_classes - 1} '
                    f'and ignore {self.ignore_index}). Check num_classes in the config, '
                    'reduce_zero_label, and that the label PNGs hold class indices, not colours.')
        return results

