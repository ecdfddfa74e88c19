"""Build the paper-shaped results table (and loss curves) from any set of work dirs.

    # the toy study's runs (tools/run_pipeline.py writes the manifest)
    python tools/analysis_tools/collect_results.py --manifest work_dirs/pipeline/results/runs.json

    # any runs, e.g. GPU runs of the benchmark configs: METHOD TASK WORK_DIR [SEED]
    python tools/analysis_tools/collect_results.py \
        --run DMT pretrain work_dirs/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k \
        --run DMT cls work_dirs/dmt-vit-small-p16_8xb128-coslr-200e_in1k \
        --run DMT det work_dirs/cascade-mask-rcnn_dmt-vit-small-p16-f2p-fpn_... \
        --run DMT seg work_dirs/upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-512x512 \
        --out-dir work_dirs/results --plots

TASK: pretrain (its time), cls (top-1), det (AP box, AP mask), seg (mIoU), teacher (loss
curve and time note only). Metrics come from <work_dir>/test_metrics.json (tools/test.py),
else the last evaluation in <work_dir>/*/vis_data/scalars.json. Seeds of one method are
reported as mean ± std. Writes results.md, results.csv, results.json (+ PNGs with --plots).
"""
import argparse
import os
import os.path as osp

from dmt_mm.study.report import runs_from_args, write_report
from dmt_mm.study.results import ResultsError, load_manifest


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
    parser.add_argument('--plots', action='store_true', help='also write loss-curve PNGs')
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
    out_dir = args.out_dir or (osp.dirname(osp.abspath(args.manifest[0])) if args.manifest
                               else os.getcwd())
    os.makedirs(out_dir, exist_ok=True)
    try:
        out = write_report(runs, out_dir, title=args.title, notes=args.note, plots=args.plots)
    except ResultsError as exc:
        raise SystemExit(f'error: {exc}') from None
    print(out['markdown'])
    for name, path in out['paths'].items():
        print(f'{name}: {path}')


if __name__ == '__main__':
    main()
