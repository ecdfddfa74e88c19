"""Extract the student backbone from a DMT training checkpoint.

    python tools/model_converters/extract_student.py SRC DST [--prefix backbone.] [--ema]

SRC is an mmengine Runner checkpoint of a DMT run (the student lives under ``backbone.``;
teachers are never saved). DST holds ``{'state_dict': {'backbone.<key>': ...}, 'meta'}``,
for ``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')`` in mmpretrain,
mmdet and mmseg configs. The student is checked to be a complete ViT before writing.
"""
import argparse
import os.path as osp

from dmt_mm.utils.checkpoint_formats import (CheckpointFormatError, describe_vit,
                                             save_backbone_checkpoint, summarise_keys,
                                             validate_backbone)
from dmt_mm.utils.safe_load import safe_torch_load

PLAIN_META = (str, int, float, bool, type(None))


def extract_student(checkpoint, prefix='backbone.', ema=False):
    """(student state dict without prefix, meta) of a loaded Runner checkpoint."""
    key = 'ema_state_dict' if ema else 'state_dict'
    if key not in checkpoint:
        hint = ' (was the run trained with an EMAHook?)' if ema else ''
        raise CheckpointFormatError(f'no {key!r} in the checkpoint{hint}; top-level keys: '
                                    f'{sorted(checkpoint)}')
    state_dict = checkpoint[key]
    if ema:  # mmengine's averaged model wraps the model as `module.`
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()
                      if k.startswith('module.')}
    student = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not student:
        raise CheckpointFormatError(f'no {prefix!r} keys in {key!r}; it holds '
                                    f'{summarise_keys(state_dict)}. Set --prefix.')
    meta = {k: v for k, v in (checkpoint.get('meta') or {}).items()
            if isinstance(v, PLAIN_META)}
    return student, meta


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='DMT training checkpoint (mmengine Runner format)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--prefix', default='backbone.', help='student prefix in state_dict')
    parser.add_argument('--ema', action='store_true',
                        help='take the EMA weights (ema_state_dict) instead')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    student, meta = extract_student(safe_torch_load(args.src), args.prefix, args.ema)
    vit_kwargs = validate_backbone(student)
    meta.update(extracted_from=osp.basename(args.src), ema=args.ema,
                vit=describe_vit(vit_kwargs))
    save_backbone_checkpoint(student, args.dst, meta)
    print(f'student: {len(student)} tensors, ViT: {describe_vit(vit_kwargs)}\nwrote {args.dst}')


if __name__ == '__main__':
    main()
