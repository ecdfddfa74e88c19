"""Convert an official self-supervised ViT checkpoint, as published, to mmpretrain layout.

    python tools/model_converters/vit_to_mmpretrain.py SRC DST
        [--src-format auto|mae|mocov3|ibot|dino|mmpretrain] [--momentum-encoder]
        [--checkpoint-key teacher|student] [--arch vit-base] [--debug]

Writes ``{'state_dict': {'backbone.<key>': ...}, 'meta': {...}}``: usable as
``FrozenViTTeacher(checkpoint=DST)`` or ``init_cfg=dict(type='Pretrained', checkpoint=DST,
prefix='backbone.')``. Teachers can also read SRC directly (the same conversion runs at load
time); converting once checks the file and makes it smaller (heads, decoder dropped).
"""
import argparse
import os.path as osp

from dmt_mm.checkpoint import safe_torch_load
from dmt_mm.checkpoint.backbone import describe_vit, save_backbone_checkpoint, validate_backbone
from dmt_mm.checkpoint.vit_layouts import FORMATS, convert_vit_state_dict
from dmt_mm.errors import run_tool_main
from dmt_mm.models.backbones import DMTViT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint file as published by the authors')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--src-format', default='auto', choices=FORMATS)
    parser.add_argument('--momentum-encoder', action='store_true',
                        help='MoCo v3: take the momentum encoder instead of the base encoder')
    parser.add_argument('--checkpoint-key', default=None,
                        help="network of a DINO / iBOT training checkpoint ('teacher' by "
                        "default there, or 'student')")
    parser.add_argument('--arch', default=None,
                        help='check against this DMTViT arch (e.g. vit-base); default: the '
                        'arch the weights imply')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    found = convert_vit_state_dict(safe_torch_load(args.src), args.src_format,
                                   args.momentum_encoder, args.checkpoint_key)
    vit_kwargs = validate_backbone(found.state_dict, args.arch, vit_cls=DMTViT)
    meta = dict(converted_from=osp.basename(args.src), src_format=found.fmt,
                encoder_location=found.location, vit=describe_vit(vit_kwargs))
    save_backbone_checkpoint(found.state_dict, args.dst, meta)
    print(f'{found.summary()}\nchecked as ViT: {describe_vit(vit_kwargs)}\nwrote {args.dst}')


if __name__ == '__main__':
    run_tool_main(main)
