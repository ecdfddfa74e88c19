"""Extract the student backbone from a DMT training checkpoint.

    python tools/model_converters/extract_student.py SRC DST [--prefix backbone.] [--ema]
                                                     [--any-model] [--debug]

SRC is an mmengine Runner checkpoint of a DMT run (the student lives under ``backbone.``;
teachers are never saved). DST holds ``{'state_dict': {'backbone.<key>': ...}, 'meta'}``,
for ``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')`` in mmpretrain,
mmdet and mmseg configs. The student is checked to be a complete ViT before writing.
Checkpoints of detection or segmentation runs are refused unless ``--any-model`` is given:
their backbones were fine-tuned for a task (and may be windowed, at another resolution).
"""
import argparse
import os.path as osp

from dmt_mm.checkpoint import safe_torch_load
from dmt_mm.checkpoint.backbone import describe_vit, save_backbone_checkpoint, validate_backbone
from dmt_mm.checkpoint.format_errors import CheckpointFormatError, summarise_keys
from dmt_mm.errors import run_tool_main
from dmt_mm.models.backbones import DMTViT

PLAIN_META = (str, int, float, bool, type(None))
# state-dict prefixes of the downstream models (mmdet detectors, mmseg segmentors)
TASK_PREFIXES = {'detection': ('rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.'),
                 'segmentation': ('decode_head.', 'auxiliary_head.')}


def extract_student(checkpoint, prefix='backbone.', ema=False, any_model=False):
    """(student state dict without prefix, meta) of a loaded Runner checkpoint."""
    key = 'ema_state_dict' if ema else 'state_dict'
    for task, prefixes in TASK_PREFIXES.items():
        found = sorted({k.split('.')[0] + '.*' for k in checkpoint.get('state_dict', {})
                        if k.startswith(prefixes)})
        if found and not any_model:
            raise CheckpointFormatError(
                f'this is a {task} checkpoint (it holds {", ".join(found)}), not a DMT '
                'pretraining one: its backbone was fine-tuned for the task. Give the '
                'checkpoint of the DMT run (work_dirs/<dmt config>/epoch_N.pth), or pass '
                '--any-model to take this backbone anyway')
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
    parser.add_argument('--any-model', action='store_true',
                        help='also take the backbone of a detection / segmentation checkpoint')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    student, meta = extract_student(safe_torch_load(args.src), args.prefix, args.ema,
                                    args.any_model)
    vit_kwargs = validate_backbone(student, vit_cls=DMTViT)
    meta.update(extracted_from=osp.basename(args.src), ema=args.ema,
                vit=describe_vit(vit_kwargs))
    save_backbone_checkpoint(student, args.dst, meta)
    print(f'student: {len(student)} tensors, ViT: {describe_vit(vit_kwargs)}\nwrote {args.dst}')


if __name__ == '__main__':
    run_tool_main(main)
