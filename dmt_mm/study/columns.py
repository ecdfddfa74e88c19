"""The tasks a results table knows and the columns each one fills.

One definition of every column (its key, header and the range its values must lie in) and
of the table's column order, shared by the reading of work dirs (:mod:`.work_dirs`), the
aggregation (:mod:`.results`), the written table (:mod:`.table`) and the figures
(:mod:`.plots`).
"""
import math
from collections import OrderedDict
from typing import Iterable, List, Optional, Tuple

PERCENT = (0.0, 100.0)
# task -> its columns (key, header, unit range), in table order
TASK_COLUMNS = OrderedDict([
    ('cls', (('top1', 'top-1', PERCENT), )),
    ('det', (('ap_box', 'AP box', PERCENT), ('ap_mask', 'AP mask', PERCENT))),
    ('seg', (('miou', 'mIoU', PERCENT), )),
    ('knn', (('knn_top1', 'k-NN top-1', PERCENT), )),
    ('linear', (('linear_top1', 'linear top-1', PERCENT), )),
    ('seg_linear', (('seg_linear_miou', 'linear seg mIoU', PERCENT), )),
    ('pretrain', (('pretrain_s', 'pretrain time (s)', (0.0, math.inf)), )),
])
TRANSFER_TASKS = ('cls', 'det', 'seg')  # shown together, as the paper's table
PROBE_TASKS = ('knn', 'linear', 'seg_linear')  # may name a factor: 'seg_linear/colour'
TASKS = tuple(TASK_COLUMNS) + ('teacher', )  # teacher: plots and notes only
MARK = '*'


def split_task(task: str) -> Tuple[str, Optional[str]]:
    """'seg_linear/colour' -> ('seg_linear', 'colour'); 'det' -> ('det', None)."""
    base, _, factor = task.partition('/')
    return base, factor or None


def column_order(keys: Iterable[str]) -> List[str]:
    """Table order: the transfer tasks, the probes (each by factor in first-seen order),
    then the pretraining time."""
    keys = list(dict.fromkeys(keys))
    canonical = [c[0] for task in TASK_COLUMNS for c in TASK_COLUMNS[task]]

    def rank(key):
        base_key, _, factor = key.partition('/')
        return canonical.index(base_key), bool(factor), keys.index(key)
    return sorted(keys, key=rank)


def column_header(key: str) -> str:
    base_key, _, factor = key.partition('/')
    header = next(c[1] for cols in TASK_COLUMNS.values() for c in cols if c[0] == base_key)
    return f'{header} ({factor})' if factor else header


def column_range(key: str):
    base_key = key.partition('/')[0]
    return next(c[2] for cols in TASK_COLUMNS.values() for c in cols if c[0] == base_key)
