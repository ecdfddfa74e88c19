"""Train any dmt_mm config: DMT pretraining (mmpretrain), detection (mmdet), segmentation
(mmseg) or classification. The config's ``default_scope`` chooses the registries.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]
                                 [--tensorboard] [--debug]

Every config gets exact resume, the 1-process trajectory for N ranks, finite checkpoints
and checks of its input (see the README's Reliability section and
dmt_mm/engine/defaults.py). Bad input is reported in one line; --debug shows the traceback.
"""
import argparse

from mmengine.config import DictAction

from dmt_mm.engine.launch import (
    build_runner,
    choose_resume_checkpoint,
    finish_distributed,
    load_config,
    set_local_rank_env,
)
from dmt_mm.errors import ConfigError, run_tool_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or with no value from the newest complete, '
                        'finite checkpoint of the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=10')
    parser.add_argument('--tensorboard', action='store_true',
                        help='also write the logged scalars as TensorBoard event files '
                        '(<work_dir>/<timestamp>/vis_data/; tensorboard --logdir WORK_DIR)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def add_tensorboard(cfg):
    """Add mmengine's ``TensorboardVisBackend`` beside the config's visualizer backends."""
    try:
        import tensorboard  # noqa: F401 -- SummaryWriter needs it; fail before training
    except ImportError as exc:
        raise ConfigError('--tensorboard needs the tensorboard package: '
                          'pip install -r requirements/optional.txt') from exc
    visualizer = cfg.get('visualizer') or dict(type='Visualizer', name='visualizer')
    backends = list(visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(b.get('type', '').endswith('TensorboardVisBackend') for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer['vis_backends'] = backends
    cfg.visualizer = visualizer


def merge_args(cfg, args):
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    choose_resume_checkpoint(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise ConfigError('--auto-scale-lr needs `auto_scale_lr = dict(base_batch_size=...)`'
                              ' in the config')
        cfg.auto_scale_lr.enable = True
    if args.tensorboard:
        add_tensorboard(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    set_local_rank_env(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg = merge_args(cfg, args)
    runner = build_runner(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    run_tool_main(main)
