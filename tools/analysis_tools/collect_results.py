"""Build the paper-shaped results table (and loss curves) from any set of work dirs.

    # the toy study's runs (tools/run_pipeline.py writes the manifest)
    python tools/analysis_tools/collect_results.py --manifest work_dirs/pipeline/results/runs.json

    # any runs, e.g. GPU runs of the benchmark configs: METHOD TASK WORK_DIR [SEED]
    python tools/analysis_tools/collect_results.py \
        --run DMT pretrain work_dirs/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k \
        --run DMT cls work_dirs/dmt-vit-small-p16_8xb128-coslr-200e_in1k \
        --run DMT det work_dirs/cascade-mask-rcnn_dmt-vit-small-p16-f2p-fpn_..._coco \
        --run DMT seg work_dirs/upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-512x512 \
        --out-dir work_dirs/results --plots

TASK: pretrain (its time), cls (top-1), det (AP box, AP mask), seg (mIoU), the frozen-feature
probes knn (k-NN top-1), linear (linear-probe top-1) and seg_linear (dense linear probe,
mIoU) -- a probe may name a factor of the data, e.g. seg_linear/colour -- and teacher (loss
curve and time note only). Metrics come from <work_dir>/test_metrics.json (tools/test.py),
else the last evaluation in <work_dir>/*/vis_data/scalars.json. Seeds of one method are
reported as mean ± std; every row's paired difference from the --reference row (default:
the first) comes with its 95% t-interval over the seeds both have. Writes results.md,
results.csv, results.json (every per-seed value) and, with --plots, results_figure.png (a
panel per metric, a bar per method with its 95% interval) and the loss curves.

Under the table, each cls / det / seg number says which protocol produced it: the
``protocol`` entry (name, card, source) of the config mmengine dumped into the work dir
(docs/protocols/); a config that is not a shipped benchmark config is named as such.
"""
import argparse
import glob
import os
import os.path as osp
from collections import OrderedDict

from dmt_mm.errors import run_tool_main
from dmt_mm.study.columns import PROBE_TASKS, TRANSFER_TASKS, split_task
from dmt_mm.study.report import runs_from_args, write_report
from dmt_mm.study.results import load_manifest
from dmt_mm.study.work_dirs import ResultsError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCHMARKS = {osp.basename(p) for p in glob.glob(
    osp.join(REPO, 'configs', 'benchmarks', '**', '*.py'), recursive=True)
    if '_base_' not in p}


def run_config(work_dir):
    """(file name, config) of the config mmengine dumped into the work dir: the newest
    ``<work_dir>/<config>.py``, else the newest ``*/vis_data/config.py``; or (None, None)."""
    from mmengine.config import Config
    named = sorted(glob.glob(osp.join(work_dir, '*.py')), key=osp.getmtime, reverse=True)
    logged = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'config.py')), reverse=True)
    for path in named + logged:
        try:
            cfg = Config.fromfile(path, import_custom_modules=False)
        except Exception:  # noqa: BLE001  (not a config: a work dir may hold other .py files)
            continue
        return (None if osp.basename(path) == 'config.py' else osp.basename(path)), cfg
    return None, None


def protocol_note(run):
    """'protocol NAME (card CARD; config FILE)' (or why there is none) for a transfer run."""
    name, cfg = run_config(run.work_dir)
    protocol = cfg.get('protocol') if cfg is not None else None
    if not protocol:
        config = f'config {name}' if name else f'no config dumped in {run.work_dir}'
        return f'no benchmark protocol ({config})'
    run.info[f'{run.task}_protocol'] = dict(protocol)  # results.json, per task
    if name is not None and name not in BENCHMARKS:
        return (f'config {name}, not a shipped benchmark config, derived from the '
                f'{protocol["name"]} protocol ({protocol["card"]})')
    config = f'; config {name}' if name else ''
    return f'{protocol["name"]} protocol ({protocol["card"]}{config})'


def protocol_notes(runs):
    """One line per task and protocol: 'METHOD[, METHOD] TASK: ...', or 'TASK (every
    row): ...' when all methods of the table share it (seeds never repeat a line)."""
    methods = list(dict.fromkeys(r.method for r in runs if r.task != 'teacher'))
    shared = OrderedDict()
    for run in runs:
        if split_task(run.task)[0] in TRANSFER_TASKS + PROBE_TASKS:
            users = shared.setdefault((run.task, protocol_note(run)), [])
            if run.method not in users:
                users.append(run.method)
    return [f'{task} (every row): {note}' if len(methods) > 1 and set(users) == set(methods)
            else f'{", ".join(users)} {task}: {note}'
            for (task, note), users in shared.items()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Collect metrics of work dirs into the '
                                     'results table')
    parser.add_argument('--manifest', nargs='+', default=[],
                        help='runs.json files listing {method, task, work_dir, seed}')
    parser.add_argument('--run', nargs='+', action='append', default=[],
                        metavar='METHOD TASK WORK_DIR [SEED]',
                        help='one work dir (repeat the flag for more)')
    parser.add_argument('--out-dir', help='where to write (default: the first manifest\'s '
                        'folder, else the current folder)')
    parser.add_argument('--title', default='Results')
    parser.add_argument('--note', nargs='+', action='extend', default=[],
                        help='lines added under the table')
    parser.add_argument('--reference', help='the method every row is compared with (paired '
                        'difference over seeds, 95%% t-interval); default: the first row')
    parser.add_argument('--plots', action='store_true',
                        help='also write results_figure.png and the loss-curve PNGs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runs = []
    for path in args.manifest:
        runs += load_manifest(path)
    try:
        runs += runs_from_args(args.run)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f'error: {exc}') from None
    if not runs:
        raise SystemExit('error: nothing to collect: give --manifest and/or --run')
    notes = list(args.note) + protocol_notes(runs)
    out_dir = args.out_dir or (osp.dirname(osp.abspath(args.manifest[0])) if args.manifest
                               else os.getcwd())
    os.makedirs(out_dir, exist_ok=True)
    try:
        out = write_report(runs, out_dir, title=args.title, notes=notes, plots=args.plots,
                           reference=args.reference)
    except ResultsError as exc:
        raise SystemExit(f'error: {exc}') from None
    print(out['markdown'])
    for name, path in out['paths'].items():
        print(f'{name}: {path}')


if __name__ == '__main__':
    run_tool_main(main)
