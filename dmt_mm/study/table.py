"""The results table written out: GitHub markdown (with the paired-difference table) and CSV.

Rows come from :func:`dmt_mm.study.results.aggregate`; this module only lays them out, so
the markdown, the CSV and the figures show the same columns in the same order.
"""
import csv
from typing import Dict, List, Optional, Sequence, Tuple

from .columns import MARK, TASK_COLUMNS, TRANSFER_TASKS, column_header, column_order


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
