"""Record the DMT golden fixture with the code of the state_dict layout being frozen.

    PYTHONPATH=/path/to/old/checkout python tests/data/dmt_golden/make_golden.py OUT_DIR

Run against the pre-refactor code (flat ``DMT``: ``tfd_heads.*``, ``sfd_adaptors.*``,
``target_norms.<teacher>_<block>``, ``fusion_log_vars.*``, ``decoder.*``); it writes, per
case, the initial algorithm state_dict in that layout and the loss terms of a few
``train_step`` calls on one fixed batch. ``tests/models/test_dmt_golden.py`` loads these old
state_dicts into today's model and must reproduce every loss to 1e-6.

Teachers are random and not in any state_dict: :func:`fill_teacher` sets their weights
from a seed alone (no model initialiser involved), so both sides rebuild them identically.
"""
import sys

import torch

STEPS = 4
TINY_STUDENT = dict(embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32)
TINY_TEACHER = dict(embed_dims=16, num_layers=3, num_heads=2, feedforward_channels=32)
TOY_CONFIG = 'configs/toy/dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py'


def fill_teacher(vit, seed):
    """Deterministic teacher weights: N(0, 0.2) for every tensor in name order, norm
    weights shifted to 1 (a plausible, non-degenerate random ViT)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in sorted(vit.state_dict(keep_vars=True).items()):
            value = torch.randn(tensor.shape, generator=gen) * 0.2
            if name.endswith('.weight') and tensor.dim() == 1:  # LayerNorm scales
                value += 1.0
            tensor.copy_(value)


def fixed_batch(batch, size, seed=0):
    """A collated uint8 batch as the DMT data pipeline yields it."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)


def run_steps(model, optim_cfg, images, steps=STEPS):
    """Loss terms (floats) of ``steps`` train steps on the same batch."""
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample
    optim = build_optim_wrapper(model, optim_cfg)
    model.train()
    data = dict(inputs=images, data_samples=[DataSample() for _ in range(len(images))])
    history = []
    for _ in range(steps):
        log_vars = model.train_step(data, optim)
        history.append({k: float(v) for k, v in log_vars.items()})
    return history


def _old_tiny_cases():
    """Tiny models covering every old key family (old config layout)."""
    def teacher(name, **kw):
        return dict(type='FrozenViTTeacher', name=name,
                    backbone=dict(arch=TINY_TEACHER, img_size=32, patch_size=8), **kw)
    base = dict(type='DMT', backbone=dict(arch=TINY_STUDENT, img_size=32, patch_size=8),
                allow_random_teachers=True)
    return {
        # statistical norms (buffers), learned fusion (parameters), masking + decoder,
        # teacher dropping (random numbers drawn after the masking ones)
        'tiny_masked_learned': dict(
            base, teachers=[teacher('a'), teacher('b'), teacher('c', img_size=48)],
            target_norm=['ema_std', 'phis', 'ln'], fusion='learned', teacher_drop_prob=0.3,
            mask_ratio=0.5, mask_loss_on='masked',
            decoder=dict(type='MAEPretrainDecoder', decoder_embed_dim=8, decoder_depth=1,
                         decoder_num_heads=2)),
        # SFD over two blocks, adaptive fusion, other losses per strategy
        'tiny_multiblock_adaptive': dict(
            base, teachers=[teacher('a'), teacher('b')],
            sfd=dict(teacher_layers=[1, -1], loss=dict(type='MSEDistillLoss'),
                     adaptor=dict(type='DMTSpatialAdaptor', hidden_channels=8)),
            tfd=dict(cls_weight=0.3, loss_weight=0.7),
            fusion=dict(mode='adaptive', temperature=0.5), target_norm='ema_std'),
    }


def main(out_dir):
    import os
    import os.path as osp

    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import dmt_mm.models  # noqa: F401
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    toy = Config.fromfile(TOY_CONFIG)
    cases = {'toy': (toy.model.to_dict(), toy.optim_wrapper.to_dict(), 2, 64)}
    tiny_optim = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2))
    for name, cfg in _old_tiny_cases().items():
        cases[name] = (cfg, tiny_optim, 4, 32)
    for name, (model_cfg, optim_cfg, batch, size) in cases.items():
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
        for k, teacher in enumerate(model.teachers):
            fill_teacher(teacher.backbone, 1000 + k)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        images = fixed_batch(batch, size)
        torch.manual_seed(1)
        history = run_steps(model, optim_cfg, images)
        torch.save(dict(state_dict=state, images=images, losses=history),
                   osp.join(out_dir, f'{name}.pth'))
        print(name, len(state), 'tensors;', [round(h['loss'], 6) for h in history])


if __name__ == '__main__':
    main(sys.argv[1])
