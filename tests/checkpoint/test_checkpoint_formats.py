"""Official teacher checkpoints (MAE, MoCo v3, iBOT, DINO) load into the mmpretrain ViT.

Each test builds a small ViT state dict with the official (timm-style) names, wraps it in the
container the authors publish, and checks the teacher's CLS and patch tokens against an
independent functional forward written here from the timm layout.
"""
import argparse

import pytest
import torch
import torch.nn.functional as F
from conftest import TOOLS, run_tool, tool_env

from dmt_mm.checkpoint import safe_torch_load
from dmt_mm.checkpoint.formats import (
    CheckpointFormatError,
    convert_vit_state_dict,
    load_vit_weights,
)
from dmt_mm.models.backbones import DMTViT
from dmt_mm.models.teachers import FrozenViTTeacher

DIM, DEPTH, HEADS, PATCH, IMG = 32, 3, 4, 8, 32
ARCH = dict(embed_dims=DIM, num_layers=DEPTH, num_heads=HEADS, feedforward_channels=4 * DIM)


def timm_vit(seed, dim=DIM, depth=DEPTH, patch=PATCH, img=IMG):
    """Random ViT weights under the official timm-style names."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    n = (img // patch) ** 2
    sd = {'cls_token': r(1, 1, dim), 'pos_embed': r(1, n + 1, dim),
          'patch_embed.proj.weight': r(dim, 3, patch, patch, scale=0.05),
          'patch_embed.proj.bias': r(dim)}
    for i in range(depth):
        b = f'blocks.{i}.'
        sd.update({b + 'norm1.weight': 1 + r(dim), b + 'norm1.bias': r(dim),
                   b + 'attn.qkv.weight': r(3 * dim, dim), b + 'attn.qkv.bias': r(3 * dim),
                   b + 'attn.proj.weight': r(dim, dim), b + 'attn.proj.bias': r(dim),
                   b + 'norm2.weight': 1 + r(dim), b + 'norm2.bias': r(dim),
                   b + 'mlp.fc1.weight': r(4 * dim, dim), b + 'mlp.fc1.bias': r(4 * dim),
                   b + 'mlp.fc2.weight': r(dim, 4 * dim), b + 'mlp.fc2.bias': r(dim)})
    sd.update({'norm.weight': 1 + r(dim), 'norm.bias': r(dim)})
    return sd


def reference_forward(sd, x, heads=HEADS, eps=1e-6):
    """timm / DINO / MAE ViT forward, written from the official layout: (cls, patches)."""
    w = sd['patch_embed.proj.weight']
    dim, patch = w.shape[0], w.shape[-1]
    x = F.conv2d(x, w, sd['patch_embed.proj.bias'], stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([sd['cls_token'].expand(x.shape[0], -1, -1), x], dim=1) + sd['pos_embed']
    B, N, _ = x.shape
    depth = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('blocks.'))
    for i in range(depth):
        p = f'blocks.{i}.'
        h = F.layer_norm(x, (dim,), sd[p + 'norm1.weight'], sd[p + 'norm1.bias'], eps)
        qkv = F.linear(h, sd[p + 'attn.qkv.weight'], sd[p + 'attn.qkv.bias'])
        q, k, v = qkv.reshape(B, N, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(B, N, dim)
        x = x + F.linear(h, sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias'])
        h = F.layer_norm(x, (dim,), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'], eps)
        h = F.gelu(F.linear(h, sd[p + 'mlp.fc1.weight'], sd[p + 'mlp.fc1.bias']))
        x = x + F.linear(h, sd[p + 'mlp.fc2.weight'], sd[p + 'mlp.fc2.bias'])
    x = F.layer_norm(x, (dim,), sd['norm.weight'], sd['norm.bias'], eps)
    return x[:, 0], x[:, 1:]


def prefixed(prefix, sd):
    return {prefix + k: v for k, v in sd.items()}


def heads(prefix, seed):
    g = torch.Generator().manual_seed(seed)
    return {prefix + 'mlp.0.weight': torch.randn(16, DIM, generator=g),
            prefix + 'last_layer.weight_g': torch.ones(64, 1),
            prefix + 'last_layer.weight_v': torch.randn(64, 16, generator=g)}


# (format, published container, seed of the weights the loader must pick, ignored keys)
def official_files():
    enc, other = timm_vit(0), timm_vit(1)
    mae_decoder = {'mask_token': torch.zeros(1, 1, 16), 'decoder_embed.weight': torch.ones(16, DIM),
                   'decoder_blocks.0.norm1.weight': torch.ones(16),
                   'decoder_pred.weight': torch.ones(8, 16)}
    moco = {**prefixed('module.base_encoder.', enc),
            'module.base_encoder.head.0.weight': torch.ones(16, DIM),
            'module.base_encoder.head.1.running_mean': torch.zeros(16),
            **prefixed('module.momentum_encoder.', other),
            'module.momentum_encoder.head.0.weight': torch.ones(16, DIM),
            'module.predictor.0.weight': torch.ones(16, 16)}
    return {
        'mae': ({'model': enc}, set()),
        'mae_full': ({'model': {**enc, **mae_decoder}}, set(mae_decoder)),
        'mocov3': ({'epoch': 300, 'arch': 'vit_base', 'state_dict': moco,
                    'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1, 'params': [0]}]}},
                   {k for k in moco if not k.startswith('module.base_encoder.')
                    or '.head.' in k}),
        'ibot': ({'state_dict': {**enc, 'masked_embed': torch.zeros(1, DIM)}},
                 {'masked_embed'}),
        'ibot_full': ({'teacher': {**prefixed('backbone.', enc), 'backbone.masked_embed':
                                   torch.zeros(1, DIM), **heads('head.', 2)},
                       'student': {**prefixed('module.backbone.', other),
                                   **heads('module.head.', 3)},
                       'epoch': 800, 'args': argparse.Namespace(arch='vit_base')},
                      {'backbone.masked_embed', *heads('head.', 2)}),
        'dino': (dict(enc), set()),
        'dino_full': ({'teacher': {**prefixed('backbone.', enc), **heads('head.', 2)},
                       'student': {**prefixed('module.backbone.', other),
                                   **heads('module.head.', 3)},
                       'epoch': 100, 'args': argparse.Namespace(arch='vit_base'),
                       'dino_loss': {'center': torch.zeros(1, 64)}},
                      set(heads('head.', 2))),
    }


def teacher_from(path, **kwargs):
    teacher = FrozenViTTeacher(backbone=dict(arch=ARCH, img_size=IMG, patch_size=PATCH),
                               checkpoint=str(path), **kwargs)
    teacher.init_weights()
    return teacher


def assert_tokens_match(teacher, sd, x):
    out = teacher(x)
    cls, patch = reference_forward(sd, x)
    torch.testing.assert_close(out['cls'], cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(out['patch'], patch, atol=1e-5, rtol=0)


@pytest.fixture(scope='module')
def images():
    return torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize('name', ['mae', 'mae_full', 'mocov3', 'ibot', 'ibot_full', 'dino',
                                  'dino_full'])
@pytest.mark.parametrize('explicit', [False, True], ids=['auto', 'explicit'])
def test_official_layouts_match_reference(name, explicit, tmp_path, images):
    checkpoint, ignored = official_files()[name]
    fmt = name.split('_')[0]
    path = tmp_path / f'{name}.pth'
    torch.save(checkpoint, path)
    teacher = teacher_from(path, checkpoint_format=fmt if explicit else 'auto')
    assert_tokens_match(teacher, timm_vit(0), images)
    found = convert_vit_state_dict(safe_torch_load(str(path)), fmt if explicit else 'auto')
    assert found.fmt == fmt
    assert set(found.ignored) == ignored


def test_moco_momentum_encoder_and_dino_student(tmp_path, images):
    files = official_files()
    torch.save(files['mocov3'][0], tmp_path / 'moco.pth')
    torch.save(files['dino_full'][0], tmp_path / 'dino.pth')
    assert_tokens_match(teacher_from(tmp_path / 'moco.pth', use_momentum_encoder=True),
                        timm_vit(1), images)
    assert_tokens_match(teacher_from(tmp_path / 'dino.pth', checkpoint_key='student'),
                        timm_vit(1), images)
    with pytest.raises(CheckpointFormatError, match='applies to MoCo v3'):
        teacher_from(tmp_path / 'dino.pth', use_momentum_encoder=True)


def test_vitdet_backbone_drops_cls_and_its_position():
    sd = timm_vit(0)
    vit = DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH, with_cls_token=False,
                 out_type='featmap', window_size=2)
    found = load_vit_weights(vit, {'model': sd})
    assert 'cls_token' in found.ignored
    torch.testing.assert_close(vit.pos_embed, sd['pos_embed'][:, 1:], atol=0, rtol=0)


def test_mae_finetuned_fc_norm_maps_to_global_pool_norm():
    sd = timm_vit(0)
    sd['fc_norm.weight'], sd['fc_norm.bias'] = sd.pop('norm.weight'), sd.pop('norm.bias')
    sd['head.weight'] = torch.zeros(10, DIM)
    vit = DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH, final_norm=False,
                 out_type='avg_featmap')
    load_vit_weights(vit, {'model': sd}, fmt='mae')
    torch.testing.assert_close(vit.ln2.weight, sd['fc_norm.weight'], atol=0, rtol=0)
    # A model that needs the pretraining-time final norm says what is missing.
    with pytest.raises(CheckpointFormatError, match=r'missing 2 backbone keys: ln1\.\*'):
        load_vit_weights(DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH), {'model': sd})


def _model():
    return DMTViT(arch=ARCH, img_size=IMG, patch_size=PATCH)


def test_missing_block_is_an_error_naming_it():
    sd = {k: v for k, v in timm_vit(0).items() if not k.startswith('blocks.1.')}
    with pytest.raises(CheckpointFormatError) as info:
        load_vit_weights(_model(), sd, fmt='dino')
    msg = str(info.value)
    assert r'missing 12 backbone keys: layers.1.* (12)' in msg
    assert 'missing [1]' in msg  # the hint names the absent block


def test_missing_single_tensor_is_an_error():
    sd = timm_vit(0)
    del sd['blocks.2.mlp.fc2.weight']
    with pytest.raises(CheckpointFormatError, match=r'missing 1 backbone keys: layers\.2\.\*'):
        load_vit_weights(_model(), {'state_dict': sd})


def test_wrong_embed_dim_says_which_arch():
    sd = timm_vit(0, dim=16)
    with pytest.raises(CheckpointFormatError) as info:
        load_vit_weights(_model(), {'model': sd})
    msg = str(info.value)
    assert 'shape mismatches' in msg and 'checkpoint (16, 3, 8, 8) vs model (32, 3, 8, 8)' in msg
    assert 'the checkpoint is 16 wide, the model 32' in msg and "'vit-small'" in msg


def test_deeper_checkpoint_is_unexpected_not_dropped():
    with pytest.raises(CheckpointFormatError, match=r'unexpected 12 keys: layers\.3\.\*'):
        load_vit_weights(_model(), timm_vit(0, depth=4))


def test_unknown_layout_and_wrong_explicit_format():
    with pytest.raises(CheckpointFormatError, match='unknown checkpoint layout'):
        load_vit_weights(_model(), {'net': {'conv1.weight': torch.zeros(1)}})
    with pytest.raises(CheckpointFormatError, match='not a mocov3 checkpoint as published'):
        load_vit_weights(_model(), timm_vit(0), fmt='mocov3')
    with pytest.raises(CheckpointFormatError, match='unknown checkpoint format'):
        load_vit_weights(_model(), timm_vit(0), fmt='beit')


def test_resnet_file_is_named_as_such():
    """MoCo v3 also publishes ResNet-50 files, in the same container as its ViTs."""
    resnet = {'module.base_encoder.conv1.weight': torch.zeros(64, 3, 7, 7),
              'module.base_encoder.bn1.running_mean': torch.zeros(64),
              'module.base_encoder.layer3.5.conv2.weight': torch.zeros(256, 256, 3, 3),
              'module.base_encoder.fc.0.weight': torch.zeros(4096, 2048)}
    for fmt in ('auto', 'mocov3'):
        with pytest.raises(CheckpointFormatError, match=r"this is a ResNet checkpoint \(e.g. "
                           r"'module.base_encoder.layer3.5.conv2.weight' in \['state_dict'\]\),"
                           ' a ViT is needed'):
            load_vit_weights(_model(), {'arch': 'resnet50', 'state_dict': resnet}, fmt=fmt)


def test_unsupported_encoder_tensors_are_an_error():
    sd = timm_vit(0)
    sd['blocks.0.ls1.gamma'] = torch.ones(DIM)  # layer scale (DINOv2): no slot in the ViT
    with pytest.raises(CheckpointFormatError, match=r'no place .*blocks\.0\.\*'):
        load_vit_weights(_model(), sd)


@pytest.mark.slow
def test_converter_tool_round_trip(tmp_path, images):
    torch.save(official_files()['mocov3'][0], tmp_path / 'vit-b-300ep.pth.tar')
    dst = tmp_path / 'mocov3_mmpretrain.pth'
    proc = run_tool([TOOLS / 'model_converters' / 'vit_to_mmpretrain.py',
                     tmp_path / 'vit-b-300ep.pth.tar', dst], cwd=tmp_path)
    assert 'mocov3 layout' in proc.stdout
    converted = safe_torch_load(str(dst))  # weights-only: tensors and plain meta
    assert all(k.startswith('backbone.') for k in converted['state_dict'])
    assert converted['meta']['src_format'] == 'mocov3'
    for fmt in ('auto', 'mmpretrain', 'mocov3'):  # configs naming the original format too
        assert_tokens_match(teacher_from(dst, checkpoint_format=fmt), timm_vit(0), images)
    # mmpretrain's own loader with the backbone prefix sees every ViT key
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
    sd = _load_checkpoint_with_prefix('backbone.', str(dst))
    assert set(sd) == set(_model().state_dict())


@pytest.mark.slow
def test_checkpoint_package_imports_no_layer_above_it():
    """dmt_mm.checkpoint sits below the models, the engine and the tools: loading a teacher
    or converting a file must not pull them in (nor create import cycles with them)."""
    import subprocess
    import sys
    code = ('import sys, dmt_mm.checkpoint, dmt_mm.checkpoint.formats, dmt_mm.checkpoint.export\n'
            'print(sorted(m for m in sys.modules if m.startswith("dmt_mm.")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, env=tool_env()).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert 'dmt_mm.checkpoint.export' in loaded
    assert not [m for m in loaded if m.startswith(('dmt_mm.models', 'dmt_mm.engine',
                                                   'dmt_mm.study', 'dmt_mm.datasets'))]
