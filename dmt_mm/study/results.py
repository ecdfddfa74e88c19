"""The paper-shaped results table, from any set of mmengine work dirs.

A *run* is one work dir of one task for one method (and seed): ``cls`` (mmpretrain
classification: top-1), ``det`` (mmdet Cascade Mask R-CNN: AP box, AP mask), ``seg``
(mmseg: mIoU), the frozen-feature probes ``knn`` (k-NN top-1), ``linear`` (linear-probe
top-1) and ``seg_linear`` (dense linear probe: mIoU), each optionally of one factor of the
data (``knn/colour``, ``seg_linear/depth``: a column per factor), ``pretrain`` (the method's
pretraining: its time), or ``teacher`` (a teacher's own pretraining: plotted and noted, not
a row). Metrics are read from ``<work_dir>/test_metrics.json`` (written by
``tools/test.py``), else from the last evaluation logged in
``<work_dir>/<timestamp>/vis_data/scalars.json``; so GPU runs of the benchmark configs
collect the same way as the toy study.

Rows are methods; seeds of one method are shown as ``mean ± std`` (sample std, n - 1).
Every row is also compared with a reference row (DMT): the paired difference over the seeds
both rows have, with its 95% t-interval (``stats.paired_difference``); a cell whose interval
excludes 0 is marked ``*``. ``results.json`` keeps every per-seed value.
"""
import csv
import glob
import json
import math
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .stats import mean_std, paired_difference

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


class ResultsError(ValueError):
    """A work dir holds no usable metrics for the task asked."""


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


def _timestamp_dirs(work_dir: str) -> List[str]:
    """mmengine's ``<work_dir>/<YYYYmmdd_HHMMSS>/vis_data/scalars.json``, oldest first."""
    return sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))


def read_scalars(work_dir: str) -> List[Dict]:
    """Every logged record of every run in ``work_dir`` (resumed runs append a folder)."""
    records = []
    for path in _timestamp_dirs(work_dir):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut by a kill
    return records


def train_records(work_dir: str) -> List[Dict]:
    """Training iterations' records (those logging a learning rate), by iteration."""
    recs = [r for r in read_scalars(work_dir) if 'lr' in r or 'base_lr' in r]
    return sorted(recs, key=lambda r: r.get('iter', r.get('step', 0)))


def read_metrics(work_dir: str) -> Tuple[Dict, str]:
    """(metrics, source): test_metrics.json, else the last evaluation in scalars.json."""
    path = osp.join(work_dir, 'test_metrics.json')
    if osp.isfile(path):
        with open(path) as f:
            return json.load(f), path
    evaluated = [r for r in read_scalars(work_dir)
                 if any(k in r for k in ('accuracy/top1', 'coco/bbox_mAP', 'mIoU'))]
    if evaluated:
        return evaluated[-1], osp.join(work_dir, '*/vis_data/scalars.json')
    raise ResultsError(f'no metrics in {work_dir}: neither test_metrics.json (tools/test.py '
                       'writes it) nor an evaluation in */vis_data/scalars.json')


def pretrain_seconds(work_dir: str) -> float:
    """Training time of a run: mmengine's per-iteration ``time`` averaged over the logged
    records times the iterations run (start-up and evaluation excluded)."""
    recs = [r for r in train_records(work_dir) if 'time' in r]
    if not recs:
        raise ResultsError(f'no training iterations logged in {work_dir}/*/vis_data/'
                           'scalars.json: not a training work dir?')
    iters = max(int(r.get('iter', r.get('step', 0))) for r in recs)
    mean = sum(float(r['time']) for r in recs) / len(recs)
    return mean * iters


def task_values(task: str, metrics: Dict) -> Tuple[Dict[str, float], List[str]]:
    """Table values of one task's metrics (percent), and notes on how they were read."""
    notes = []
    base, factor = split_task(task)
    if factor is not None:
        values, notes = task_values(base, metrics)
        return {f'{k}/{factor}': v for k, v in values.items()}, notes
    if task in ('cls', 'knn', 'linear'):
        key = next((k for k in ('accuracy/top1', 'top1') if k in metrics), None)
        if key is None:
            raise ResultsError(f'classification metrics without accuracy/top1: {sorted(metrics)}')
        return {TASK_COLUMNS[task][0][0]: float(metrics[key])}, notes
    if task == 'det':
        values = {}
        for col, key in (('ap_box', 'coco/bbox_mAP'), ('ap_mask', 'coco/segm_mAP')):
            if key in metrics:
                values[col] = 100.0 * float(metrics[key])  # mmdet reports fractions
        if not values and not any(k.startswith('coco/') for k in metrics):
            # CocoMetric returns nothing when no box passed the score threshold
            notes.append('no detections above the score threshold: AP counted as 0')
            values = {'ap_box': 0.0, 'ap_mask': 0.0}
        if not values:
            raise ResultsError(f'detection metrics without coco/bbox_mAP: {sorted(metrics)}')
        return values, notes
    if task in ('seg', 'seg_linear'):
        if 'mIoU' not in metrics:
            raise ResultsError(f'segmentation metrics without mIoU: {sorted(metrics)}')
        return {TASK_COLUMNS[task][0][0]: float(metrics['mIoU'])}, notes
    raise ResultsError(f'task {task!r} has no metrics')


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


def table_keys(rows: Sequence[Dict]) -> List[str]:
    """Columns of the table: the transfer columns as a block when any is present, the
    probe columns present, and the pretraining time."""
    present = column_order(k for r in rows for k in r['columns'])
    transfer = [c[0] for t in TRANSFER_TASKS for c in TASK_COLUMNS[t]]
    keys = transfer if any(k in transfer for k in present) else []
    keys += [k for k in present if k not in transfer and k != 'pretrain_s']
    return keys + ['pretrain_s']


def _cell(stats: Optional[Dict], digits: int = 1) -> str:
    if stats is None:
        return '-'
    text = f'{stats["mean"]:.{digits}f}'
    if stats['std'] is not None:
        text += f' ± {stats["std"]:.{digits}f}'
    if (stats.get('diff') or {}).get('excludes_zero'):
        text += f' {MARK}'
    return text


def _diff_cell(diff: Optional[Dict]) -> str:
    if diff is None:
        return '-'
    text = f'{diff["mean"]:+.1f}'
    if diff['low'] is not None:
        text += f' [{diff["low"]:+.1f}, {diff["high"]:+.1f}]'
    return text + (f' {MARK}' if diff['excludes_zero'] else '')


def format_markdown(rows: Sequence[Dict], title: str = 'Results',
                    extra_columns: Sequence[Tuple[str, str]] = (('teachers', 'teachers'),),
                    notes: Sequence[str] = ()) -> str:
    """The table as GitHub markdown (one row per method), and, when rows were compared
    with a reference, the table of paired differences."""
    keys = table_keys(rows)
    headers = ['method'] + [h for _, h in extra_columns] + [column_header(k) for k in keys]
    lines = [f'# {title}', '', '| ' + ' | '.join(headers) + ' |',
             '|' + '|'.join(['---'] + ['---'] * len(extra_columns) +
                            ['---:'] * len(keys)) + '|']
    for row in rows:
        cells = [row['method']] + [str(row['info'].get(k, '')) for k, _ in extra_columns]
        for key in keys:
            cells.append(_cell(row['columns'].get(key), 0 if key == 'pretrain_s' else 1))
        lines.append('| ' + ' | '.join(cells) + ' |')
    seeds = sorted({len(r['seeds']) for r in rows})
    lines += ['', f'Seeds per method: {", ".join(map(str, seeds))} (mean ± sample std where '
              'more than one).']
    reference = next((r['reference'] for r in rows if r.get('reference')), None)
    compared = [r for r in rows if r.get('reference') and r['method'] != reference]
    if compared:
        diff_keys = [k for k in keys if k != 'pretrain_s']
        lines += ['', f'Paired difference from {reference}: mean over the seeds both rows '
                  f'have [95% t-interval]; {MARK} = the interval excludes 0 (also marked in '
                  'the table above).', '',
                  '| method | paired seeds | ' + ' | '.join(column_header(k)
                                                           for k in diff_keys) + ' |',
                  '|---|---:|' + '|'.join(['---:'] * len(diff_keys)) + '|']
        for row in compared:
            diffs = [row['columns'].get(k, {}).get('diff') for k in diff_keys]
            n = max((d['n'] for d in diffs if d), default=0)
            lines.append(f'| {row["method"]} | {n} | ' +
                         ' | '.join(_diff_cell(d) for d in diffs) + ' |')
    row_notes = [f'{r["method"]}: {n}' for r in rows for n in r['notes']]
    if notes or row_notes:
        lines.append('')
    for note in list(notes) + row_notes:
        lines.append(f'- {note}')
    return '\n'.join(lines) + '\n'


def write_csv(rows: Sequence[Dict], path: str,
              extra_columns: Sequence[Tuple[str, str]] = (('teachers', 'teachers'),)) -> None:
    """One line per method: mean, std and n of every column (empty where absent), and the
    paired difference from the reference with its interval."""
    keys = table_keys(rows)
    fields = ['method'] + [k for k, _ in extra_columns]
    for key in keys:
        fields += [key, f'{key}_std', f'{key}_n']
        if key != 'pretrain_s':
            fields += [f'{key}_diff', f'{key}_diff_low', f'{key}_diff_high']
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            line = {'method': row['method']}
            line.update({k: row['info'].get(k, '') for k, _ in extra_columns})
            for key in keys:
                stats = row['columns'].get(key)
                line[key] = '' if stats is None else f'{stats["mean"]:.4f}'
                line[f'{key}_std'] = '' if stats is None or stats['std'] is None \
                    else f'{stats["std"]:.4f}'
                line[f'{key}_n'] = '' if stats is None else stats['n']
                if key == 'pretrain_s':
                    continue
                diff = (stats or {}).get('diff') or {}
                for name, field_key in (('mean', 'diff'), ('low', 'diff_low'),
                                        ('high', 'diff_high')):
                    value = diff.get(name)
                    line[f'{key}_{field_key}'] = '' if value is None else f'{value:.4f}'
            writer.writerow(line)


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

