"""The paper-shaped results table, from any set of mmengine work dirs.

A *run* is one work dir of one task for one method (and seed): ``cls`` (mmpretrain
classification: top-1), ``det`` (mmdet Cascade Mask R-CNN: AP box, AP mask), ``seg``
(mmseg: mIoU) or ``pretrain`` (the method's pretraining: its time), or ``teacher`` (a teacher's own
pretraining: plotted and noted, not a row). Metrics are read from
``<work_dir>/test_metrics.json`` (written by ``tools/test.py``), else from the last
evaluation logged in ``<work_dir>/<timestamp>/vis_data/scalars.json``; so GPU runs of the
benchmark configs collect the same way as the toy study.

Rows are methods; seeds of one method are averaged and shown as ``mean ± std`` (sample
std, n - 1) with the number of seeds.
"""
import csv
import glob
import json
import math
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

TASKS = ('pretrain', 'cls', 'det', 'seg', 'teacher')  # teacher: plots and notes only
# (key, header, unit range) in table order
COLUMNS = (('top1', 'top-1', (0.0, 100.0)),
           ('ap_box', 'AP box', (0.0, 100.0)),
           ('ap_mask', 'AP mask', (0.0, 100.0)),
           ('miou', 'mIoU', (0.0, 100.0)),
           ('pretrain_s', 'pretrain time (s)', (0.0, math.inf)))
TASK_COLUMNS = {'cls': ('top1', ), 'det': ('ap_box', 'ap_mask'), 'seg': ('miou', ),
                'pretrain': ('pretrain_s', )}


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
        if self.task not in TASKS:
            raise ResultsError(f'unknown task {self.task!r} for {self.work_dir}; choose one of '
                               f'{TASKS}')


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
    if task == 'cls':
        key = next((k for k in ('accuracy/top1', 'top1') if k in metrics), None)
        if key is None:
            raise ResultsError(f'classification metrics without accuracy/top1: {sorted(metrics)}')
        return {'top1': float(metrics[key])}, notes
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
    if task == 'seg':
        if 'mIoU' not in metrics:
            raise ResultsError(f'segmentation metrics without mIoU: {sorted(metrics)}')
        return {'miou': float(metrics['mIoU'])}, notes
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


def _mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def aggregate(records: Sequence[Dict]) -> List[Dict]:
    """Per method (first-seen order): mean, std and n of every column over its seeds."""
    by_method: Dict[str, List[Dict]] = OrderedDict()
    for rec in records:
        by_method.setdefault(rec['method'], []).append(rec)
    rows = []
    for method, recs in by_method.items():
        cols = {}
        for key, _, _ in COLUMNS:
            vals = [r['values'][key] for r in recs if key in r['values']]
            if vals:
                mean, std = _mean_std(vals)
                cols[key] = dict(mean=mean, std=std, n=len(vals), values=vals)
        info = {}
        for r in recs:
            info.update(r['info'])
        notes = sorted({n for r in recs for n in r['notes']})
        rows.append(dict(method=method, columns=cols, info=info, notes=notes,
                         seeds=[r['seed'] for r in recs]))
    return rows


def check_row_values(rows: Sequence[Dict]) -> List[str]:
    """Problems with the numbers: non-finite or outside the column's range."""
    ranges = {key: rng for key, _, rng in COLUMNS}
    problems = []
    for row in rows:
        for key, stats in row['columns'].items():
            lo, hi = ranges[key]
            for v in stats['values']:
                if not math.isfinite(v) or not lo <= v <= hi:
                    problems.append(f'{row["method"]}: {key}={v} outside [{lo}, {hi}]')
    return problems


def _cell(stats: Optional[Dict], digits: int = 1) -> str:
    if stats is None:
        return '-'
    text = f'{stats["mean"]:.{digits}f}'
    if stats['std'] is not None:
        text += f' ± {stats["std"]:.{digits}f}'
    return text


def format_markdown(rows: Sequence[Dict], title: str = 'Results',
                    extra_columns: Sequence[Tuple[str, str]] = (('teachers', 'teachers'),),
                    notes: Sequence[str] = ()) -> str:
    """The table as GitHub markdown (one row per method)."""
    headers = ['method'] + [h for _, h in extra_columns] + [h for _, h, _ in COLUMNS]
    lines = [f'# {title}', '', '| ' + ' | '.join(headers) + ' |',
             '|' + '|'.join(['---'] + ['---'] * len(extra_columns) +
                            ['---:'] * len(COLUMNS)) + '|']
    for row in rows:
        cells = [row['method']] + [str(row['info'].get(k, '')) for k, _ in extra_columns]
        for key, _, _ in COLUMNS:
            cells.append(_cell(row['columns'].get(key), 0 if key == 'pretrain_s' else 1))
        lines.append('| ' + ' | '.join(cells) + ' |')
    seeds = sorted({len(r['seeds']) for r in rows})
    lines += ['', f'Seeds per method: {", ".join(map(str, seeds))} (mean ± sample std where '
              'more than one).']
    row_notes = [f'{r["method"]}: {n}' for r in rows for n in r['notes']]
    for note in list(notes) + row_notes:
        lines.append(f'- {note}')
    return '\n'.join(lines) + '\n'


def write_csv(rows: Sequence[Dict], path: str,
              extra_columns: Sequence[Tuple[str, str]] = (('teachers', 'teachers'),)) -> None:
    """One line per method: mean, std and n of every column (empty where absent)."""
    fields = ['method'] + [k for k, _ in extra_columns]
    for key, _, _ in COLUMNS:
        fields += [key, f'{key}_std', f'{key}_n']
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            line = {'method': row['method']}
            line.update({k: row['info'].get(k, '') for k, _ in extra_columns})
            for key, _, _ in COLUMNS:
                stats = row['columns'].get(key)
                line[key] = '' if stats is None else f'{stats["mean"]:.4f}'
                line[f'{key}_std'] = '' if stats is None or stats['std'] is None \
                    else f'{stats["std"]:.4f}'
                line[f'{key}_n'] = '' if stats is None else stats['n']
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
                  notes: Sequence[str] = ()) -> Dict:
    """Collect, aggregate, check and write ``results.md``, ``results.csv`` and
    ``results.json`` (every per-seed value and where it was read) into ``out_dir``."""
    records = collect_runs(runs)
    rows = aggregate(records)
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

