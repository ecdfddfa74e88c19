"""The whole DMT study in miniature, on CPU, in one command (docs/pipeline.md).

    python tools/run_pipeline.py [--work-dir work_dirs/pipeline] [--quick]
                                 [--with-baselines] [--controlled] [--seeds N]
                                 [--threads 1] [--jobs 2] [--set det_iters=300 ...]
                                 [--images a.jpg b.png ...]

Stages: toy world data -> three toy self-supervised teachers (mmpretrain MAE, MoCo v3 and
BYOL, each saved in its official checkpoint layout) -> DMT distillation of the toy student
(TFD + SFD) -> student extraction -> transfer to toy detection (Cascade Mask R-CNN, COCO
AP), segmentation (UperNet, mIoU) and classification (top-1), and the frozen-feature probes
(k-NN, linear, dense linear) -> results.md / results.csv / results.json (mean ± std over
seeds, paired differences from DMT with 95% t-intervals), results_figure.png, loss curves
and a PCA picture of teacher vs student features, under <work-dir>/results/.
--controlled runs the controlled multi-teacher experiment instead (docs/pipeline.md).

Rerunning the same command skips finished stages and restarts an interrupted one cleanly.
The stages run this checkout's tools (tools/) on its configs (configs/toy/pipeline/) with
the installed dmt_mm (`pip install -e .`, as tools/setup_env.sh does).
"""
import argparse
import os
import os.path as osp
import sys
import time

from dmt_mm.errors import run_tool_main
from dmt_mm.study.design import CONTROLLED_METHODS, METHODS, PROFILES, StudyOptions
from dmt_mm.study.runner import StageError, read_marker
from dmt_mm.study.study import Study

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run the DMT study in miniature on CPU (teachers, distillation, '
        'det/seg/cls transfer, results)')
    parser.add_argument('--work-dir',
                        help='where every stage writes (default: work_dirs/pipeline, '
                        'work_dirs/pipeline_controlled with --controlled)')
    parser.add_argument('--quick', action='store_true',
                        help='a few iterations per stage: checks the plumbing in about two '
                        'minutes, numbers meaningless (the test suite runs this)')
    parser.add_argument('--with-baselines', action='store_true',
                        help='add single-teacher DMT (K=1) for each teacher, TFD only, SFD '
                        'only and a randomly initialised student')
    parser.add_argument('--controlled', action='store_true',
                        help='the controlled multi-teacher experiment: three teachers trained '
                        'with known objectives (category; colour x texture; size x depth), '
                        'DMT from all and from each, dense linear probes of every factor')
    parser.add_argument('--seeds', type=int, default=1,
                        help='repeat distillation and transfer with seeds 0..N-1 and report '
                        'mean ± std (teachers are trained once)')
    parser.add_argument('--methods', nargs='+',
                        help='run exactly these methods (default: dmt, plus the baselines '
                        f'with --with-baselines; choose from {", ".join(METHODS)}, or with '
                        f'--controlled from {", ".join(CONTROLLED_METHODS)})')
    parser.add_argument('--set', nargs='+', default=[], metavar='KEY=N',
                        help='change stage lengths, e.g. --set det_iters=300 '
                        f'(keys: {", ".join(k for k in PROFILES["default"])})')
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads per training process (default 1: on a shared '
                        '2-core machine, 2 threads per process were measured up to 10x '
                        'slower under contention)')
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='stages run at once, when their inputs are ready (default: '
                        'min(2, CPU cores)); each has --threads threads')
    parser.add_argument('--images', nargs='+',
                        help='photos for the PCA picture (default: public-domain / CC0 '
                        'sample photos shipped with matplotlib and this package)')
    parser.add_argument('--list', action='store_true',
                        help='list the stages and exit without running anything')
    parser.add_argument('--verbose', action='store_true',
                        help='echo every line the stages print (always in <stage>/stage.log)')
    return parser.parse_args(argv)


def _overrides(pairs):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep:
            raise SystemExit(f'error: --set expects KEY=VALUE, got {pair!r} (e.g. --set '
                             'det_iters=300)')
        try:
            out[key] = int(value)
        except ValueError:
            raise SystemExit(f'error: --set {key}={value}: not an integer; give a positive '
                             f'whole number, e.g. --set {key}=10') from None
    return out


def _cpu_seconds():
    """User + system time of this process and of the stages' finished subprocesses."""
    import resource
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                resource.getrusage(resource.RUSAGE_CHILDREN)))


def _check_counts(args):
    """--threads, --jobs and --seeds count things: at least 1."""
    for flag, value in (('--threads', args.threads), ('--jobs', args.jobs),
                        ('--seeds', args.seeds)):
        if value < 1:
            raise SystemExit(f'error: {flag} {value}: must be at least 1 (e.g. {flag} 1)')


def main(argv=None):
    args = parse_args(argv)
    _check_counts(args)
    work_dir = args.work_dir or ('work_dirs/pipeline_controlled' if args.controlled
                                 else 'work_dirs/pipeline')
    options = StudyOptions(tools_dir=osp.join(REPO, 'tools'),
                           configs_dir=osp.join(REPO, 'configs', 'toy', 'pipeline'),
                           work_dir=work_dir, profile='quick' if args.quick else 'default',
                           with_baselines=args.with_baselines, controlled=args.controlled,
                           seeds=args.seeds, methods=args.methods,
                           overrides=_overrides(args.set), images=args.images)
    try:
        study = Study(options)
    except ValueError as exc:
        raise SystemExit(f'error: {exc}') from None
    stages = study.stages()
    if args.list:
        for i, stage in enumerate(stages, 1):
            state = 'done' if read_marker(osp.join(study.root, stage.name)) else 'to do'
            print(f'[{i}/{len(stages)}] {stage.name:28s} {state:6s} {stage.title}')
        return 0
    print(f'DMT study in miniature -> {study.root}  ({len(stages)} stages, '
          f'{options.profile} lengths, {args.jobs} at a time, {args.threads} thread(s) per '
          'process)')
    start, cpu_start = time.time(), _cpu_seconds()
    try:
        study.run(threads=args.threads, jobs=args.jobs, verbose=args.verbose)
    except StageError as exc:
        print(f'\nerror: {exc}', file=sys.stderr)
        return 1
    results = osp.join(study.root, 'results')
    with open(osp.join(results, 'results.md')) as f:
        print('\n' + f.read())
    print(f'artifacts in {results}: ' + ', '.join(stages[-1].outputs))
    print(f'total wall time of this invocation: {time.time() - start:.0f} s; CPU time of its '
          f'processes: {_cpu_seconds() - cpu_start:.0f} s (per stage: '
          '<stage>/.stage_done.json)')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool_main(main))
