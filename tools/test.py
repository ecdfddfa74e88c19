"""Evaluate a checkpoint with any dmt_mm config (mmpretrain, mmdet or mmseg scope).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl] [--show-dir DIR]
                                           [--cfg-options k=v ...] [--launcher ...] [--debug]

The metrics are printed by the evaluator (e.g. CocoMetric's 12-number AP table) and written
to ``<work_dir>/test_metrics.json``.
"""
import argparse
import json
import numbers
import os.path as osp

from mmengine.config import DictAction
from mmengine.dist import is_main_process

from dmt_mm.checkpoint import atomic_write
from dmt_mm.engine.launch import build_runner, finish_distributed, load_config, set_local_rank_env
from dmt_mm.errors import ConfigError, run_tool_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where metrics and logs go')
    parser.add_argument('--out', help='dump raw predictions to this .pkl file')
    parser.add_argument('--show-dir', help='save visualised predictions in this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. test_dataloader.batch_size=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def enable_visualization(cfg, show_dir):
    """Switch on the scope's visualisation hook, writing pictures to ``show_dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ConfigError('--show-dir needs a `default_hooks.visualization` hook in the config')
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=osp.abspath(show_dir))
    elif scope == 'mmseg':
        hook.update(draw=True)
        cfg.visualizer.save_dir = show_dir
    else:  # mmpretrain
        hook.update(enable=True, out_dir=show_dir)
    return cfg


def add_dump_metric(runner, scope, out):
    if not out.endswith(('.pkl', '.pickle')):
        raise ConfigError(f'--out must name a .pkl file, got {out!r}')
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump  # encodes masks as RLE
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def to_json_value(value):
    """Metrics come as Python, numpy or torch scalars (or lists, for per-class values)."""
    if isinstance(value, numbers.Number) or (hasattr(value, 'ndim') and value.ndim == 0):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    return str(value)


def main(argv=None):
    args = parse_args(argv)
    set_local_rank_env(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')
    cfg.load_from = args.checkpoint
    if args.show_dir:
        cfg = enable_visualization(cfg, args.show_dir)
    runner = build_runner(cfg, data_fields=('test_dataloader',))
    if args.out:
        add_dump_metric(runner, cfg.get('default_scope'), args.out)
    metrics = runner.test()
    if is_main_process():
        path = osp.join(cfg.work_dir, 'test_metrics.json')
        atomic_write(path, json.dumps({k: to_json_value(v) for k, v in metrics.items()},
                                      indent=2))
        print(f'metrics written to {path}')
    finish_distributed()
    return metrics


if __name__ == '__main__':
    run_tool_main(main)
