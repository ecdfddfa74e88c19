"""PCA picture of ViT patch features: the first three principal components of each model's
last-block patch tokens as RGB, one column per model, one row per image.

    python tools/analysis_tools/visualize_features.py \
        --model 'MAE ViT-B' checkpoints/mae_pretrain_vit_base.pth \
        --model 'DMT ViT-S' work_dirs/.../student_vit-small-p16.pth \
        --num-heads 'DMT ViT-S=6' [--images a.jpg b.png] [--size 224] [--out pca.png]

Any ViT checkpoint loads: official MAE / MoCo v3 / DINO / iBOT files as published,
mmpretrain files, extracted students (layout detected; --format LABEL=FMT to force). The
architecture is read from the weights; the number of heads is not stored in weights, so
give --num-heads where a model does not use 64 dims per head (ViT-S/16 uses 6 heads of 64:
fine; MoCo v3's ViT-S uses 12). --random-init LABEL=CONFIG adds the untrained backbone of
a config (model.backbone) for reference. Default images: public-domain / CC0 photos
(matplotlib's grace_hopper.jpg and the ones in dmt_mm/study/sample_images/).
"""
import argparse


def _pairs(items, flag, cast=str):
    out = {}
    for item in items:
        key, sep, value = item.rpartition('=')
        if not sep:
            raise SystemExit(f'{flag} expects LABEL=VALUE, got {item!r}')
        out[key] = cast(value)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='PCA picture of ViT patch features')
    parser.add_argument('--model', nargs=2, action='append', default=[],
                        metavar=('LABEL', 'CHECKPOINT'), help='a model to show (repeat)')
    parser.add_argument('--num-heads', nargs='+', default=[], metavar='LABEL=N')
    parser.add_argument('--format', nargs='+', default=[], metavar='LABEL=FMT',
                        help='checkpoint layout (default auto)')
    parser.add_argument('--random-init', nargs='+', default=[], metavar='LABEL=CONFIG',
                        help='also show the randomly initialised model.backbone of CONFIG')
    parser.add_argument('--images', nargs='+', help='photos (default: bundled samples)')
    parser.add_argument('--size', type=int, default=224, help='input size (square crop)')
    parser.add_argument('--seed', type=int, default=0, help='seed of --random-init models')
    parser.add_argument('--out', default='pca_features.png')
    parser.add_argument('--title', default='first 3 PCA components of last-block patch '
                        'features as RGB')
    return parser.parse_args(argv)


def random_backbone(config, seed):
    """The config's model.backbone (a DMTViT), initialised but untrained."""
    import torch
    from mmengine.config import Config

    from dmt_mm.models.backbones import DMTViT
    cfg = Config.fromfile(config).model.backbone.to_dict()
    for key in ('type', 'init_cfg', 'window_size', 'global_attn_indices', 'out_indices',
                'out_type', 'final_norm', 'with_cls_token'):
        cfg.pop(key, None)  # a plain ViT with the same weights' shapes
    torch.manual_seed(seed)
    vit = DMTViT(**cfg)
    vit.init_weights()
    vit.eval()
    return vit


def main(argv=None):
    args = parse_args(argv)
    from collections import OrderedDict

    from dmt_mm.study.features import default_images, load_vit, pca_figure
    heads = _pairs(args.num_heads, '--num-heads', int)
    formats = _pairs(args.format, '--format')
    randoms = _pairs(args.random_init, '--random-init')
    labels = [label for label, _ in args.model] + list(randoms)
    unknown = (set(heads) | set(formats)) - set(labels)
    if unknown:
        raise SystemExit(f'--num-heads / --format name unknown models {sorted(unknown)}; '
                         f'models: {labels}')
    if not labels:
        raise SystemExit('give at least one --model LABEL CHECKPOINT (or --random-init)')
    models = OrderedDict()
    for label, path in args.model:
        models[label] = load_vit(path, fmt=formats.get(label, 'auto'), num_heads=heads.get(label))
    for label, config in randoms.items():
        models[label] = random_backbone(config, args.seed)
    images = args.images or default_images()
    stats = pca_figure(models, images, args.out, size=args.size, title=args.title)
    for label, s in stats.items():
        print(f'{label}: {s["grid"][0]}x{s["grid"][1]} tokens, first 3 components explain '
              f'{100 * s["explained"]:.1f}% of the variance')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    from dmt_mm.errors import run_tool_main
    run_tool_main(main)
