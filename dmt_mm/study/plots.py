"""Loss curves (PNG, matplotlib's Agg backend) from mmengine's ``scalars.json`` logs."""
import math
from typing import Dict, Optional, Sequence

from .work_dirs import train_records


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, axes, used: int, out_path: str, title: str) -> str:
    """Blank the unused panels, add the title, write the PNG."""
    for ax in list(axes.flat)[used:]:
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def loss_series(work_dir: str, key: str = 'loss'):
    """(iterations, values) of one logged key over a run's training records."""
    xs, ys = [], []
    for rec in train_records(work_dir):
        if key in rec and isinstance(rec[key], (int, float)) and math.isfinite(rec[key]):
            xs.append(rec.get('iter', rec.get('step')))
            ys.append(float(rec[key]))
    return xs, ys


def loss_keys(work_dir: str, prefix: str = 'loss_') -> Sequence[str]:
    """The per-term loss keys a run logged (e.g. DMT's loss_tfd_mae, loss_sfd_byol)."""
    keys = []
    for rec in train_records(work_dir):
        keys += [k for k in rec if k.startswith(prefix) and k not in keys]
    return keys


def plot_loss_panels(panels: Dict[str, Dict[str, str]], out_path: str,
                     keys: Optional[Dict[str, Sequence[str]]] = None, ncols: int = 3,
                     title: str = '', log_panels: Sequence[str] = ()) -> str:
    """One subplot per panel; in each, one curve per ``label -> work_dir`` (the total
    ``loss``), or per logged key of ``keys[panel]`` when given (one run's loss terms).
    Panels named in ``log_panels`` get a log y axis (positive losses spanning decades)."""
    plt = _pyplot()
    n = len(panels)
    if n == 0:
        raise ValueError('no loss curves to plot')
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (panel, runs) in zip(axes.flat, panels.items()):
        drawn = 0
        for label, work_dir in runs.items():
            for key in (keys or {}).get(panel, ['loss']):
                xs, ys = loss_series(work_dir, key)
                if xs:
                    name = label if key == 'loss' else key.replace('loss_', '')
                    ax.plot(xs, ys, label=name, linewidth=1.2)
                    drawn += 1
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel('iteration')
        ax.set_ylabel('loss')
        if panel in log_panels and drawn:
            ax.set_yscale('log')
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, 'no training log', ha='center', va='center',
                    transform=ax.transAxes)
        ax.grid(alpha=0.3)
    return _save(plt, fig, axes, n, out_path, title)


def plot_results_figure(rows: Sequence[Dict], out_path: str, ncols: int = 4,
                        title: str = '') -> str:
    """One panel per metric column of the results table (pretraining time excluded), one
    bar per method: the mean over seeds with its 95% t-interval (no interval for one
    seed); the seeds' own values as dots."""
    from .columns import column_header
    from .stats import t_interval
    from .table import table_keys
    plt = _pyplot()
    keys = [k for k in table_keys(rows) if k != 'pretrain_s'
            and any(k in r['columns'] for r in rows)]
    if not keys:
        raise ValueError('no metric to plot')
    ncols = min(ncols, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    width = max(3.2, 0.55 * len(rows) + 1.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.6 * nrows),
                             squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, key in zip(axes.flat, keys):
        for i, row in enumerate(rows):
            stats = row['columns'].get(key)
            if stats is None:
                continue
            interval = t_interval(stats['values'])
            err = None if interval is None else \
                [[stats['mean'] - interval[0]], [interval[1] - stats['mean']]]
            ax.bar(i, stats['mean'], yerr=err, capsize=4, color=colours[i % len(colours)],
                   alpha=0.8)
            ax.plot([i] * len(stats['values']), stats['values'], 'k.', markersize=4)
        ax.set_title(column_header(key), fontsize=10)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r['method'] for r in rows], rotation=35, ha='right', fontsize=7)
        ax.grid(axis='y', alpha=0.3)
    return _save(plt, fig, axes, len(keys), out_path, title)
