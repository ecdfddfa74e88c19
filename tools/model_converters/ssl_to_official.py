"""Write an mmpretrain self-supervised Runner checkpoint in the layout its method's authors
publish (the inverse of the teacher loader; see dmt_mm/checkpoint/export.py).

    python tools/model_converters/ssl_to_official.py SRC DST --algorithm MAE|MoCoV3|BYOL
        --format mae|mocov3|dino|ibot [--backbone-only] [--debug]

The file is written atomically and unsigned, like a downloaded one, so loading it goes
through the same weights-only path as the real teachers.
"""
import argparse

from dmt_mm.checkpoint import safe_torch_load
from dmt_mm.checkpoint.export import (
    ALGORITHM_LAYOUTS,
    OFFICIAL_FORMATS,
    ExportError,
    export_algorithm_checkpoint,
    save_official,
)
from dmt_mm.errors import run_tool_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='mmengine Runner checkpoint of MAE / MoCoV3 / BYOL')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--algorithm', required=True, choices=sorted(ALGORITHM_LAYOUTS))
    parser.add_argument('--format', required=True, choices=OFFICIAL_FORMATS)
    parser.add_argument('--backbone-only', action='store_true',
                        help='DINO / iBOT: the backbone-only release instead of the training '
                        'checkpoint')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ckpt = safe_torch_load(args.src)
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ExportError(f'{args.src} has no state_dict: not an mmengine Runner checkpoint')
    epoch = int((ckpt.get('meta') or {}).get('epoch', 0) or 0)
    obj = export_algorithm_checkpoint(ckpt['state_dict'], args.algorithm, args.format,
                                      full=not args.backbone_only, epoch=epoch)
    save_official(obj, args.dst)
    print(f'wrote {args.dst} ({args.format} layout)')


if __name__ == '__main__':
    run_tool_main(main)
