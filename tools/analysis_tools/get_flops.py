"""Parameters and FLOPs of any dmt_mm config's model: the student backbone, and for DMT
pretraining configs also the heads and every frozen teacher, each at its own resolution
and patch size (docs/performance.md, docs/teachers.md).

    python tools/analysis_tools/get_flops.py CONFIG [--shape 224 [224]] [--random-teachers]
        [--counter torch|mmengine] [--out flops.json] [--cfg-options k=v ...]

FLOPs are 2 x multiply-adds of matrix products, convolutions and attention, counted by
``torch.utils.flop_counter`` with attention on the math backend (``--counter mmengine``:
mmengine's FlopAnalyzer, in multiply-adds x 2, with an attention handle added); see
dmt_mm/analysis/flops.py. Detection / segmentation configs: the backbone only (heads depend on
the number of proposals and the input).
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction

from dmt_mm import analysis as A
from dmt_mm.errors import run_tool_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--shape', type=int, nargs='+', default=None,
                   help='input height [width] (default: the backbone\'s img_size)')
    p.add_argument('--random-teachers', action='store_true',
                   help='DMT: build the teachers without their checkpoint files (same FLOPs)')
    p.add_argument('--counter', choices=['torch', 'mmengine'], default='torch')
    p.add_argument('--out', default=None, help='write the numbers as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    return p.parse_args(argv)


def build(cfg):
    """Build the config's model on CPU in its own scope (registries as tools/train.py)."""
    import importlib

    from mmengine.registry import MODELS, init_default_scope

    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    scope = cfg.get('default_scope', 'mmpretrain')
    importlib.import_module({'mmdet': 'mmdet.models', 'mmseg': 'mmseg.models'}.get(
        scope, 'mmpretrain.models'))
    init_default_scope(scope)
    with MODELS.switch_scope_and_registry(scope) as models, A.quiet_mmengine_log():
        return models.build(cfg.model)


def backbone_size(backbone, shape):
    if shape:
        return (shape[0], shape[-1])
    patch = backbone.patch_embed.projection.kernel_size
    grid = backbone.patch_resolution
    return (grid[0] * patch[0], grid[1] * patch[1])


def count(fn, module, x, counter):
    """Forward FLOPs of ``fn(x)`` (``module`` owns the weights) with the chosen counter."""
    if counter == 'torch':
        return A.count_flops(fn, x)['total']

    class Traced(torch.nn.Module):  # jit tracing needs a module with tensor outputs
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, inp):
            out = fn(inp)
            if isinstance(out, dict):
                return out['tokens'] if 'tokens' in out else out['patch']
            return out[-1] if isinstance(out, (list, tuple)) else out
    return 2 * A.mmengine_flops(Traced(), (x,))['total']  # multiply-adds -> FLOPs


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    is_dmt = cfg.model.get('type') == 'DMT'
    if is_dmt and args.random_teachers:
        A.prepare_config(cfg, random_teachers=True)
    model = build(cfg)
    model.eval()
    backbone = model.backbone
    size = backbone_size(backbone, args.shape)
    x = torch.randn(1, 3, *size)
    out = dict(config=args.config, input=list(size), counter=args.counter,
               params_total=A.num_params(model), params_backbone=A.num_params(backbone),
               unit='FLOPs (2 per multiply-add) per image, forward')
    with torch.no_grad():
        fwd = backbone.forward_tokens if hasattr(backbone, 'forward_tokens') else backbone
        out['backbone'] = count(fwd, backbone, x, args.counter)
        if is_dmt:
            out['teachers'] = {}
            for t in model.target_generator.teachers:
                info = A.teacher_flops(t, size)
                if args.counter != 'torch':
                    info['flops'] = count(t, t.backbone, x, args.counter)
                out['teachers'][t.name] = info
    if is_dmt:
        out['dmt'] = A.dmt_flops(model, size, torch.device('cpu'), counted_train=False)

    print(f'{args.config}\ninput {size[0]}x{size[1]}, counter {args.counter}')
    print(f'params: model {out["params_total"] / 1e6:.2f} M (trained), backbone '
          f'{out["params_backbone"] / 1e6:.2f} M')
    print(f'backbone forward: {out["backbone"] / 1e9:.3f} GFLOPs/image')
    for name, t in out.get('teachers', {}).items():
        print(f'teacher {name} ({t["type"]} {t["family"]}, {t["resolution"][0]}x'
              f'{t["resolution"][1]} px, patch {t["patch"]}: {t["grid"][0]}x{t["grid"][1]} '
              f'tokens, {t["width"]} wide, {t["blocks"]} blocks): {t["params"] / 1e6:.2f} M '
              f'params (frozen, not in the model\'s parameters), {t["flops"] / 1e9:.3f} '
              'GFLOPs/image')
    if is_dmt:
        d = out['dmt']
        print(f'DMT step per image: student {d["student"] / 1e9:.3f} + heads/losses '
              f'{d["heads"] / 1e9:.3f} + teachers {d["teachers_total"] / 1e9:.3f} = forward '
              f'{d["forward"] / 1e9:.3f} GFLOPs; training {d["train"] / 1e9:.3f} GFLOPs '
              '(3x student+heads, 1x teachers)')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(out, f, indent=1, default=str)
    return out


if __name__ == '__main__':
    run_tool_main(main)
