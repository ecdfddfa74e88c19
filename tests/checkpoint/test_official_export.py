"""Export to the official teacher layouts (dmt_mm.checkpoint.export) is the exact inverse
of the loader (dmt_mm.checkpoint.vit_layouts).

The independent references: the hand-written official (timm) key set and functional ViT
forward of tests/checkpoint/test_checkpoint_formats.py, and the real mmpretrain MAE / MoCo v3 / BYOL
models of the pipeline's teacher configs.
"""
import argparse

import pytest
import torch
from conftest import CONFIGS
from mmengine.config import Config
from test_checkpoint_formats import ARCH, DIM, IMG, PATCH, reference_forward, timm_vit

from dmt_mm.checkpoint import is_signed, safe_torch_load
from dmt_mm.checkpoint.export import (
    ExportError,
    export_algorithm_checkpoint,
    official_checkpoint,
    save_official,
    to_official_names,
)
from dmt_mm.checkpoint.vit_layouts import convert_vit_state_dict, load_vit_weights
from dmt_mm.models.backbones import DMTViT
from dmt_mm.models.teachers import FrozenViTTeacher

PIPELINE = CONFIGS / 'toy' / 'pipeline'


def random_vit(seed, **kwargs):
    torch.manual_seed(seed)
    vit = DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH, **kwargs)
    with torch.no_grad():  # LayerNorms start at 1/0: make every tensor distinctive
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    vit.eval()  # (mmpretrain's ViT.train() returns None)
    return vit


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_official_names_are_the_published_ones():
    """The exported names are exactly those of a hand-written official ViT state dict, and
    an independent forward written from those names reproduces the model's tokens."""
    vit = random_vit(0)
    exported = to_official_names(vit.state_dict())
    assert set(exported) == set(timm_vit(0))
    x = torch.randn(2, 3, IMG, IMG)
    ref_cls, ref_patch = reference_forward(exported, x)
    with torch.no_grad():
        out = vit.forward_tokens(x)
    torch.testing.assert_close(out['tokens'][:, 0], ref_cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out['tokens'][:, 1:], ref_patch, atol=1e-5, rtol=1e-5)


def test_fc_norm_of_global_pool_models_round_trips():
    vit = random_vit(1, final_norm=False, out_type='avg_featmap')
    exported = to_official_names(vit.state_dict())
    assert 'fc_norm.weight' in exported and 'norm.weight' not in exported


def test_unknown_tensors_are_refused():
    with pytest.raises(ExportError, match='no official ViT name'):
        to_official_names({'layers.0.gamma_1': torch.zeros(3)})
    with pytest.raises(ExportError, match='unknown official format'):
        official_checkpoint('beit', {})


# format, official_checkpoint kwargs, the layout the loader must detect, container, prefix
LAYOUTS = [
    ('mae', dict(), 'mae', "['model']", ''),
    ('mocov3', dict(), 'mocov3', "['state_dict']", 'module.base_encoder.'),
    ('dino', dict(full=False), 'dino', 'the top level', ''),
    ('dino', dict(full=True), 'dino', "['teacher']", 'backbone.'),
    ('ibot', dict(full=False), 'ibot', "['state_dict']", ''),
    # an iBOT training checkpoint: told from DINO's by the masked-patch token of its student
    ('ibot', dict(full=True), 'ibot', "['teacher']", 'backbone.'),
]


@pytest.mark.parametrize('fmt,kwargs,detected,container,prefix', LAYOUTS,
                         ids=[f'{f}-{k.get("full", "")}' for f, k, *_ in LAYOUTS])
def test_round_trip_through_the_real_loader(tmp_path, fmt, kwargs, detected, container,
                                            prefix):
    """export -> file -> load_vit_weights(fmt='auto') gives bit-identical weights, the
    layout is recognised as the published one, and the file is an unsigned, weights-only
    file like a download."""
    vit = random_vit(2)
    other = random_vit(3)  # momentum encoder / student: must not be the one loaded
    heads = dict(projector={'fc0.weight': torch.randn(8, DIM)},
                 predictor={'fc0.weight': torch.randn(8, 8)},
                 teacher_head={'fc0.weight': torch.randn(8, DIM)},
                 student_head={'fc0.weight': torch.randn(8, DIM)})
    obj = official_checkpoint(fmt, vit.state_dict(), momentum_encoder=other.state_dict(),
                              student=other.state_dict(), heads=heads, **kwargs)
    path = save_official(obj, str(tmp_path / 'teacher.pth'))
    assert not is_signed(path)
    loaded = safe_torch_load(path)  # weights_only=True path, as for a downloaded file
    found = convert_vit_state_dict(loaded)
    assert found.fmt == detected
    assert found.location == f'{container} prefix {prefix!r}'
    fresh = DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH)
    load_vit_weights(fresh, path, fmt='auto')
    assert_same_weights(fresh, vit)
    if kwargs.get('full', True) and fmt != 'mae':  # heads present, reported as ignored
        assert any('head' in k or 'predictor' in k for k in found.ignored)


def test_mocov3_momentum_encoder_and_ibot_student(tmp_path):
    vit, other = random_vit(4), random_vit(5)
    path = save_official(official_checkpoint('mocov3', vit.state_dict(),
                                              momentum_encoder=other.state_dict()),
                         str(tmp_path / 'moco.pth.tar'))
    fresh = DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH)
    load_vit_weights(fresh, path, use_momentum_encoder=True)
    assert_same_weights(fresh, other)

    obj = official_checkpoint('ibot', vit.state_dict(), student=other.state_dict())
    assert obj['student']['module.backbone.masked_embed'].shape == (DIM, )
    assert isinstance(obj['args'], argparse.Namespace)
    path = save_official(obj, str(tmp_path / 'ibot.pth'))
    load_vit_weights(fresh, path, checkpoint_key='student')
    assert_same_weights(fresh, other)


def test_mae_decoder_gets_mae_names():
    """The MAE decoder of mmpretrain's MAEPretrainDecoder, in the MAE repository's names."""
    from dmt_mm.checkpoint.export import mae_decoder_to_official
    dec = {'mask_token': torch.zeros(1, 1, 8), 'decoder_pos_embed': torch.zeros(1, 5, 8),
           'decoder_embed.weight': torch.zeros(8, DIM),
           'decoder_blocks.0.ln1.weight': torch.zeros(8),
           'decoder_blocks.0.attn.qkv.weight': torch.zeros(24, 8),
           'decoder_blocks.0.ffn.layers.0.0.weight': torch.zeros(32, 8),
           'decoder_blocks.0.ffn.layers.1.bias': torch.zeros(8),
           'ln1.weight': torch.zeros(8), 'decoder_pred.weight': torch.zeros(768, 8)}
    assert sorted(mae_decoder_to_official(dec)) == sorted([
        'mask_token', 'decoder_pos_embed', 'decoder_embed.weight',
        'decoder_blocks.0.norm1.weight', 'decoder_blocks.0.attn.qkv.weight',
        'decoder_blocks.0.mlp.fc1.weight', 'decoder_blocks.0.mlp.fc2.bias',
        'decoder_norm.weight', 'decoder_pred.weight'])


def build_teacher_algorithm(config_name):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import dmt_mm.datasets.toy_cls  # noqa: F401  (registers, as the config imports)
    import dmt_mm.models  # noqa: F401
    cfg = Config.fromfile(str(PIPELINE / config_name))
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


TEACHERS = [('mae_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py', 'MAE', 'mae', 'mae',
             'backbone.'),
            ('mocov3_vit-toyteacher-p8_1xb32-coslr-300it_toyworld.py', 'MoCoV3', 'mocov3',
             'mocov3', 'backbone.'),
            ('byol_vit-toyteacher-p16_1xb32-coslr-300it_toyworld.py', 'BYOL', 'dino', 'dino',
             'target_net.module.0.')]


@pytest.mark.parametrize('config,algorithm,fmt,detected,encoder_prefix', TEACHERS,
                         ids=[t[1] for t in TEACHERS])
def test_pipeline_teachers_export_and_load_as_frozen_teachers(tmp_path, config, algorithm,
                                                              fmt, detected, encoder_prefix):
    """A real mmpretrain MAE / MoCo v3 / BYOL model of the pipeline's teacher configs ->
    official file -> FrozenViTTeacher(checkpoint_format='auto') of the pipeline's DMT config:
    the teacher holds exactly the encoder the algorithm trained (BYOL: its EMA network, as
    DINO's released backbone is its EMA teacher)."""
    cfg, model = build_teacher_algorithm(config)
    state = model.state_dict()
    if algorithm == 'BYOL':  # the EMA copy starts equal to the online net: tell them apart
        state = {k: (v + 1.0 if k.startswith('backbone.') and v.is_floating_point() else v)
                 for k, v in state.items()}
    path = save_official(export_algorithm_checkpoint(state, algorithm, fmt),
                         str(tmp_path / 'teacher.pth'))
    assert convert_vit_state_dict(safe_torch_load(path)).fmt == detected

    dmt_cfg = Config.fromfile(str(PIPELINE / 'dmt_vit-toy-p16_mae-mocov3-byol_1xb32-300it_'
                                  'toyworld.py'))
    name = {'MAE': 'mae', 'MoCoV3': 'mocov3', 'BYOL': 'byol'}[algorithm]
    teacher_cfg = next(t for t in dmt_cfg.model.target_generator.teachers
                       if t['name'] == name).to_dict()
    teacher_cfg.pop('type')
    teacher = FrozenViTTeacher(checkpoint=path, **teacher_cfg)
    teacher.init_weights()
    loaded = teacher.backbone.state_dict()
    expected = {k[len(encoder_prefix):]: v for k, v in state.items()
                if k.startswith(encoder_prefix)}
    assert loaded.keys() == expected.keys()
    for key in loaded:
        assert torch.equal(loaded[key], expected[key]), key


def test_export_of_the_wrong_algorithm_names_the_problem():
    with pytest.raises(ExportError, match='no tensors for: momentum_encoder'):
        export_algorithm_checkpoint({'backbone.cls_token': torch.zeros(1)}, 'MoCoV3', 'mocov3')
    with pytest.raises(ExportError, match='no export layout'):
        export_algorithm_checkpoint({}, 'SimCLR', 'mocov3')
