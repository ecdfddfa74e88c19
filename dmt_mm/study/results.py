"""The paper-shaped results table, from any set of mmengine work dirs.

A *run* is one work dir of one task for one method (and seed): ``cls`` (mmpretrain
classification: top-1), ``det`` (mmdet Cascade Mask R-CNN: AP box, AP mask), ``seg``
(mmseg: mIoU), the frozen-feature probes ``knn`` (k-NN top-1), ``linear`` (linear-probe
top-1) and ``seg_linear`` (dense linear probe: mIoU), each optionally of one factor of the
data (``knn/colour``, ``seg_linear/depth``: a column per factor), ``pretrain`` (the method's
pretraining: its time), or ``teacher`` (a teacher's own pretraining: plotted and noted, not
a row). How metrics are read from a work dir is in :mod:`.work_dirs`, the columns in
:mod:`.columns`, the written markdown and CSV in :mod:`.table`.

Rows are methods; seeds of one method are shown as ``mean ± std`` (sample std, n - 1).
Every row is also compared with a reference row (DMT): the paired difference over the seeds
both rows have, with its 95% t-interval (``stats.paired_difference``); a cell whose interval
excludes 0 is marked ``*``. ``results.json`` keeps every per-seed value.
"""
import json
import math
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .columns import PROBE_TASKS, TASKS, column_order, column_range, split_task
from .stats import mean_std, paired_difference
from .table import format_markdown, write_csv
from .work_dirs import ResultsError, pretrain_seconds, read_metrics, task_values


@dataclass
class Run:
    """One work dir of one task of one method."""
    method: str
    task: str
    work_dir: str
    seed: Optional[int] = None
    info: Dict = field(default_factory=dict)   # e.g. teachers, notes for the table

    def __post_init__(self):
        base, factor = split_task(self.task)
        if base not in TASKS or (factor and base not in PROBE_TASKS):
            raise ResultsError(f'unknown task {self.task!r} for {self.work_dir}; choose one of '
                               f'{TASKS} (a probe may name a factor: knn/colour)')


def collect_runs(runs: Iterable[Run]) -> List[Dict]:
    """One record per (method, seed) with the values of every task found."""
    table: Dict[Tuple, Dict] = OrderedDict()
    for run in runs:
        if run.task == 'teacher':
            continue
        rec = table.setdefault((run.method, run.seed), dict(
            method=run.method, seed=run.seed, values={}, notes=[], sources={},
            info=dict(run.info)))
        rec['info'].update(run.info)
        if run.task == 'pretrain':
            rec['values']['pretrain_s'] = pretrain_seconds(run.work_dir)
            rec['sources']['pretrain'] = run.work_dir
            continue
        metrics, source = read_metrics(run.work_dir)
        values, notes = task_values(run.task, metrics)
        rec['values'].update(values)
        rec['notes'] += [f'{run.task}: {n}' for n in notes]
        rec['sources'][run.task] = source
    return list(table.values())


def aggregate(records: Sequence[Dict], reference: Optional[str] = None) -> List[Dict]:
    """Per method (first-seen order): mean, std, n and the per-seed values of every column;
    with ``reference`` (a method), each column's paired difference from that row."""
    by_method: Dict[str, List[Dict]] = OrderedDict()
    for rec in records:
        by_method.setdefault(rec['method'], []).append(rec)
    keys = column_order(k for rec in records for k in rec['values'])
    rows = []
    for method, recs in by_method.items():
        cols = {}
        for key in keys:
            per_seed = OrderedDict((r['seed'], r['values'][key]) for r in recs
                                   if key in r['values'])
            if per_seed:
                mean, std = mean_std(list(per_seed.values()))
                cols[key] = dict(mean=mean, std=std, n=len(per_seed),
                                 values=list(per_seed.values()), seeds=list(per_seed))
        info = {}
        for r in recs:
            info.update(r['info'])
        notes = sorted({n for r in recs for n in r['notes']})
        rows.append(dict(method=method, columns=cols, info=info, notes=notes,
                         seeds=[r['seed'] for r in recs]))
    if reference is not None:
        add_paired_differences(rows, reference)
    return rows


def add_paired_differences(rows: Sequence[Dict], reference: str) -> None:
    """``column['diff']``: the paired difference from the ``reference`` row (over the seeds
    both have), for every other row; the pretraining time is not compared."""
    ref = next((r for r in rows if r['method'] == reference), None)
    if ref is None:
        raise ResultsError(f'reference method {reference!r} is not among the rows '
                           f'{[r["method"] for r in rows]}')
    for row in rows:
        row['reference'] = reference
        if row is ref:
            continue
        for key, stats in row['columns'].items():
            other = ref['columns'].get(key)
            if key == 'pretrain_s' or other is None:
                continue
            stats['diff'] = paired_difference(dict(zip(stats['seeds'], stats['values'])),
                                              dict(zip(other['seeds'], other['values'])))


def check_row_values(rows: Sequence[Dict]) -> List[str]:
    """Problems with the numbers: non-finite or outside the column's range."""
    problems = []
    for row in rows:
        for key, stats in row['columns'].items():
            lo, hi = column_range(key)
            for v in stats['values']:
                if not math.isfinite(v) or not lo <= v <= hi:
                    problems.append(f'{row["method"]}: {key}={v} outside [{lo}, {hi}]')
    return problems


def load_manifest(path: str) -> List[Run]:
    """Runs listed in a ``runs.json`` manifest (written by tools/run_pipeline.py): a list of
    ``{method, task, work_dir, seed, info}``; relative work dirs are relative to the file."""
    with open(path) as f:
        entries = json.load(f)
    base = osp.dirname(osp.abspath(path))
    runs = []
    for e in entries:
        work_dir = e['work_dir'] if osp.isabs(e['work_dir']) else osp.join(base, e['work_dir'])
        runs.append(Run(e['method'], e['task'], work_dir, e.get('seed'), e.get('info', {})))
    return runs


def write_manifest(runs: Sequence[Run], path: str) -> None:
    base = osp.dirname(osp.abspath(path))
    entries = [dict(method=r.method, task=r.task, seed=r.seed, info=r.info,
                    work_dir=osp.relpath(r.work_dir, base)) for r in runs]
    with open(path, 'w') as f:
        json.dump(entries, f, indent=2)


def build_results(runs: Sequence[Run], out_dir: str, title: str = 'Results',
                  notes: Sequence[str] = (), reference: Optional[str] = None) -> Dict:
    """Collect, aggregate, check and write ``results.md``, ``results.csv`` and
    ``results.json`` (every per-seed value and where it was read) into ``out_dir``. Rows are
    compared with ``reference`` (a method; default: the first row)."""
    records = collect_runs(runs)
    methods = list(dict.fromkeys(r['method'] for r in records))
    rows = aggregate(records, reference=reference or (methods[0] if methods else None))
    problems = check_row_values(rows)
    if problems:
        raise ResultsError('metrics out of range: ' + '; '.join(problems))
    md = format_markdown(rows, title, notes=notes)
    paths = dict(md=osp.join(out_dir, 'results.md'), csv=osp.join(out_dir, 'results.csv'),
                 json=osp.join(out_dir, 'results.json'))
    with open(paths['md'], 'w') as f:
        f.write(md)
    write_csv(rows, paths['csv'])
    with open(paths['json'], 'w') as f:
        json.dump(dict(rows=rows, records=records), f, indent=2, default=str)
    return dict(rows=rows, records=records, markdown=md, paths=paths)
