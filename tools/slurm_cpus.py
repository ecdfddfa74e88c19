"""CPUs a Slurm task needs for CONFIG: its data loader's ``num_workers`` + 1 (the loader
processes and the main process); used by tools/slurm_train.sh and tools/slurm_test.sh.

    python tools/slurm_cpus.py CONFIG [train_dataloader|test_dataloader]
"""
import argparse
import sys

from mmengine.config import Config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('loader', nargs='?', default='train_dataloader',
                        choices=['train_dataloader', 'val_dataloader', 'test_dataloader'])
    args = parser.parse_args(argv)
    try:
        cfg = Config.fromfile(args.config, import_custom_modules=False)
    except (OSError, SyntaxError, KeyError, ValueError) as exc:
        sys.exit(f'error: cannot read {args.config}: {exc}. Set CPUS_PER_TASK to skip this.')
    loader = cfg.get(args.loader) or {}
    print(int(loader.get('num_workers', 0)) + 1)


if __name__ == '__main__':
    main()
