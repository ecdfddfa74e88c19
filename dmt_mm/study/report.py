"""Table + loss curves from a list of runs: what ``collect_results.py`` writes."""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

from .columns import split_task
from .plots import loss_keys, plot_loss_panels, plot_results_figure
from .results import Run, build_results
from .work_dirs import pretrain_seconds

TRANSFER_TITLES = OrderedDict([('det', 'detection'), ('seg', 'segmentation'),
                               ('cls', 'classification'),
                               ('seg_linear', 'dense linear probe')])


def _first_seed(runs: Sequence[Run]) -> Dict:
    """(method, task) -> the run of the lowest seed (curves show one seed)."""
    chosen = OrderedDict()
    for run in runs:
        key = (run.method, run.task)
        if key not in chosen or (run.seed or 0) < (chosen[key].seed or 0):
            chosen[key] = run
    return chosen


def write_report(runs: Sequence[Run], out_dir: str, title: str = 'Results',
                 notes: Sequence[str] = (), plots: bool = True,
                 reference: Optional[str] = None) -> Dict:
    """results.md / .csv / .json (rows compared with ``reference``, default the first), and
    with ``plots`` results_figure.png (a panel per metric, a bar per method with its 95%
    interval over seeds), loss_pretraining.png (each teacher's loss, each pretraining
    method's loss terms) and loss_transfer.png (one panel per trained task, one curve per
    method). Runs of task ``teacher`` feed the plots and a note, not rows."""
    teachers = [r for r in runs if r.task == 'teacher']
    rows = [r for r in runs if r.task != 'teacher']
    notes = list(notes)
    if teachers:
        notes.append('teacher pretraining (once, shared by every row): ' + ', '.join(
            f'{r.method} {pretrain_seconds(r.work_dir):.0f} s' for r in teachers))
    out = build_results(rows, out_dir, title=title, notes=notes, reference=reference)
    if not plots:
        return out
    paths = dict(out['paths'])
    paths['results_figure'] = plot_results_figure(
        out['rows'], osp.join(out_dir, 'results_figure.png'),
        title=f'{title}: mean and 95% interval over seeds (dots: seeds)')
    chosen = _first_seed(rows)
    panels, keys = OrderedDict(), {}
    for run in teachers:
        panels[run.method] = {run.method: run.work_dir}
    for (method, task), run in chosen.items():
        if task == 'pretrain':
            panel = f'{method}: loss terms'
            panels[panel] = {method: run.work_dir}
            keys[panel] = ['loss'] + list(loss_keys(run.work_dir))
    if panels:
        paths['loss_pretraining'] = plot_loss_panels(
            panels, osp.join(out_dir, 'loss_pretraining.png'), keys=keys,
            title='pretraining losses (lowest seed)', log_panels=list(keys))
    transfer = OrderedDict()
    for task, name in TRANSFER_TITLES.items():
        for factor in dict.fromkeys(split_task(t)[1] for (_, t) in chosen
                                    if split_task(t)[0] == task):
            full = task if factor is None else f'{task}/{factor}'
            curves = OrderedDict((m, r.work_dir) for (m, t), r in chosen.items() if t == full)
            if curves:
                panel = name if factor is None else f'{name}, {factor}'
                transfer[f'{panel} (total loss)'] = curves
    if transfer:
        paths['loss_transfer'] = plot_loss_panels(
            transfer, osp.join(out_dir, 'loss_transfer.png'),
            title='transfer losses (lowest seed)')
    out['paths'] = paths
    return out


def runs_from_args(entries: List[List[str]]) -> List[Run]:
    """``--run METHOD TASK WORK_DIR [SEED]`` entries -> runs."""
    runs = []
    for entry in entries:
        if len(entry) not in (3, 4):
            raise ValueError(f'--run takes METHOD TASK WORK_DIR [SEED], got {entry}')
        seed = int(entry[3]) if len(entry) == 4 else None
        if not osp.isdir(entry[2]):
            raise FileNotFoundError(f'--run {entry[0]} {entry[1]}: work dir {entry[2]!r} '
                                    'does not exist')
        runs.append(Run(entry[0], entry[1], entry[2], seed))
    return runs
