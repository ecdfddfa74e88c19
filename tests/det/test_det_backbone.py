"""The detection side of the DMT student backbone and the COCO configs' backbone + neck.

* windowed attention equals global attention when one window covers the grid, and equals a
  hand-written per-window loop (padding included) otherwise; with every block global it is
  mmpretrain's VisionTransformer;
* stochastic depth drops whole images in windowed blocks, never single windows;
* activation checkpointing changes no gradient;
* every COCO benchmark config's backbone + neck gives the 5 FPN levels (strides 4-64) for
  224-multiple inputs, and for 1024 inputs (ViT-T configs: the cheap ones on CPU);
* pretrained loading: the 224-px checkpoint's position embedding loses its CLS slot and is
  resized bicubically to the detection grid; every other weight is copied; a wrong arch, a
  missing weight or a missing file is an error naming the problem.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, rel
from mmengine.config import Config
from mmengine.registry import init_default_scope

import dmt_mm.det  # noqa: F401  (registers SimpleFPN)
import dmt_mm.engine  # noqa: F401  (safe checkpoint loader)
import dmt_mm.models  # noqa: F401
from dmt_mm.models.backbones.dmt_vit import DMTViT

BENCH = sorted((CONFIGS / 'benchmarks' / 'mmdet').glob('*.py'))
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def small_vit(**kwargs):
    kwargs = dict(arch=TINY_ARCH, img_size=64, patch_size=16, out_type='featmap',
                  with_cls_token=False, final_norm=False, **kwargs)
    torch.manual_seed(0)
    model = DMTViT(**kwargs)
    model.init_weights()
    with torch.no_grad():  # non-zero position embedding, so resizing it matters
        model.pos_embed.normal_(std=0.5)
    model.eval()  # (mmpretrain backbones' train() returns None: no chaining)
    return model


# --- independent reference: a block written out by hand, one window at a time ---------------
def attention_reference(attn, tokens):
    """softmax(q k^T / sqrt(d)) v for one token set (n, C), from the block's own weights."""
    n, C = tokens.shape
    heads = attn.num_heads
    q, k, v = (tokens @ attn.qkv.weight.T + attn.qkv.bias).view(n, 3, heads, C // heads) \
        .permute(1, 2, 0, 3)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C // heads), dim=-1)
    out = (weights @ v).transpose(0, 1).reshape(n, C)
    return out @ attn.proj.weight.T + attn.proj.bias


def block_reference(layer, x, grid, window):
    """One pre-norm ViT block; attention in ``window`` x ``window`` windows over the
    zero-padded normed token map (ViTDet), or global when ``window`` is None."""
    B, N, C = x.shape
    H, W = grid
    normed = layer.ln1(x)
    attn_out = torch.zeros_like(x)
    for b in range(B):
        if window is None:
            attn_out[b] = attention_reference(layer.attn, normed[b])
            continue
        Hp, Wp = math.ceil(H / window) * window, math.ceil(W / window) * window
        padded = torch.zeros(Hp, Wp, C)
        padded[:H, :W] = normed[b].view(H, W, C)
        out = torch.zeros(Hp, Wp, C)
        for y0 in range(0, Hp, window):
            for x0 in range(0, Wp, window):
                tokens = padded[y0:y0 + window, x0:x0 + window].reshape(-1, C)
                out[y0:y0 + window, x0:x0 + window] = attention_reference(
                    layer.attn, tokens).view(window, window, C)
        attn_out[b] = out[:H, :W].reshape(N, C)
    x = x + attn_out
    fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
    return x + fc2(F.gelu(fc1(layer.ln2(x))))


@torch.no_grad()
def test_windowed_blocks_match_per_window_loop_reference():
    # 6 x 5 patch grid, 4 x 4 windows: padding on both sides; block 1 stays global
    model = small_vit(window_size=4, global_attn_indices=[1], out_indices=[1])
    x = torch.randn(2, 3, 96, 80)
    tokens, grid = model.patch_embed(x)
    tokens = tokens + F.interpolate(
        model.pos_embed.reshape(1, 4, 4, -1).permute(0, 3, 1, 2), size=grid, mode='bicubic',
        align_corners=False).flatten(2).transpose(1, 2)
    ref = block_reference(model.layers[0], tokens, grid, window=4)
    ref = block_reference(model.layers[1], ref, grid, window=None)
    out = model(x)[0]
    assert out.shape == (2, 32, 6, 5)
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(2, 32, 6, 5), atol=1e-5,
                               rtol=1e-4)


@torch.no_grad()
def test_one_window_covering_the_grid_is_global_attention():
    windowed = small_vit(window_size=4, out_indices=[1])  # grid 4 x 4 = one window
    plain = small_vit(out_indices=[1])
    plain.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(windowed(x)[0], plain(x)[0], atol=1e-5, rtol=1e-4)
    # and a smaller window really changes the result (the comparison above can fail)
    smaller = small_vit(window_size=2, out_indices=[1])
    smaller.load_state_dict(windowed.state_dict())
    assert (smaller(x)[0] - plain(x)[0]).abs().max() > 1e-3


@torch.no_grad()
def test_all_global_blocks_equal_mmpretrain_vision_transformer():
    from mmpretrain.models.backbones import VisionTransformer
    model = small_vit(window_size=3, global_attn_indices=[0, 1], out_indices=[0, 1])
    reference = VisionTransformer(arch=TINY_ARCH, img_size=64, patch_size=16,
                                  out_type='featmap', with_cls_token=False, final_norm=False,
                                  out_indices=[0, 1])
    reference.eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 80, 112)
    for ours, theirs in zip(model(x), reference(x)):
        torch.testing.assert_close(ours, theirs)


def test_drop_path_drops_whole_images_in_windowed_blocks():
    # block 1 of 2 gets the full drop-path rate (mmpretrain: linspace(0, rate, depth))
    model = small_vit(window_size=2, global_attn_indices=[0], drop_path_rate=0.5,
                      out_indices=[1])
    model.train()
    layer = model.layers[1]
    seen = {}
    layer.ln1.register_forward_pre_hook(lambda m, args: seen.__setitem__('x', args[0]))
    layer.ln2.register_forward_pre_hook(lambda m, args: seen.__setitem__('y', args[0]))
    torch.manual_seed(1)
    with torch.no_grad():
        model(torch.randn(16, 3, 64, 64))
    residual = (seen['y'] - seen['x']).view(16, 2, 2, 2, 2, 32)  # B, wy, y, wx, x, C
    window_dropped = (residual.abs().amax(dim=(2, 4, 5)) == 0).flatten(1)  # B x 4 windows
    image_dropped = window_dropped.all(dim=1)
    assert (window_dropped == image_dropped[:, None]).all(), 'windows of one image differ'
    assert 0 < image_dropped.sum() < 16  # both outcomes happen at p = 0.5


def test_activation_checkpointing_keeps_gradients():
    x = torch.randn(2, 3, 96, 80)
    grads = []
    for with_cp in (False, True):
        model = small_vit(window_size=4, global_attn_indices=[1], out_indices=[1],
                          with_cp=with_cp)
        model.train()
        model(x)[0].square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


# --- the COCO benchmark configs ----------------------------------------------------------
def build_backbone_neck(path, **backbone):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(path))
    init_default_scope('mmdet')
    cfg.model.backbone.update(backbone)
    backbone, neck = MODELS.build(cfg.model.backbone), MODELS.build(cfg.model.neck)
    backbone.eval()
    neck.eval()
    return cfg, backbone, neck


def test_there_are_both_protocols_for_three_sizes():
    names = [p.name for p in BENCH]
    for arch in ('tiny', 'small', 'base'):
        assert sum(f'dmt-vit-{arch}-p16' in n for n in names) == 2, names


def check_five_levels(path, h, w):
    cfg, backbone, neck = build_backbone_neck(path)
    arch = cfg.model.backbone.arch
    assert arch in path.name and arch in cfg.model.backbone.init_cfg.checkpoint
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, h, w))
        outs = neck(feats)
    windowed = cfg.model.backbone.get('window_size', 0) > 0
    assert len(feats) == (1 if windowed else 4)
    assert all(f.shape[-2:] == (h // 16, w // 16) for f in feats)
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32, 64)]


@pytest.mark.slow
@pytest.mark.parametrize('path', BENCH, ids=rel)
def test_config_backbone_neck_gives_five_levels(path):
    check_five_levels(path, 224, 448)


@pytest.mark.slow
@pytest.mark.parametrize('path', [p for p in BENCH if 'vit-tiny' in p.name], ids=rel)
def test_config_backbone_neck_gives_five_levels_at_1024(path):
    check_five_levels(path, 1024, 1024)


# --- loading a pretrained student --------------------------------------------------------
def save_student(path, arch='vit-tiny', drop=()):
    """A checkpoint as a DMT run writes it: the student under ``backbone.`` (224 px, CLS
    token, final norm) next to distillation heads."""
    torch.manual_seed(0)
    student = DMTViT(arch=arch, img_size=224, patch_size=16, with_cls_token=True)
    with torch.no_grad():
        for p in student.parameters():
            p.normal_()
    state = {f'backbone.{k}': v for k, v in student.state_dict().items() if k not in drop}
    state['heads.tfd.mae.fc.weight'] = torch.randn(4, 4)
    torch.save(dict(meta=dict(epoch=1), state_dict=state), path)
    return student.state_dict()


@pytest.mark.parametrize('protocol,grid', [('win14-simplefpn', None), ('f2p-fpn', (50, 63))])
def test_pretrained_student_loads_and_position_embedding_is_resized(protocol, grid,
                                                                    tmp_path):
    """iBOT protocol: the CLS token stays and the table is resized at load time to the
    canvas grid (800 x 1008 px for ViT-S/T); ViTDet: the 14 x 14 table stays (interpolated
    in forward) and loses its CLS slot, the relative-position tables start at zero."""
    path = next(p for p in BENCH if 'vit-tiny' in p.name and protocol in p.name)
    ckpt = save_student(tmp_path / 'student.pth')
    _, backbone, _ = build_backbone_neck(
        path, init_cfg=dict(type='Pretrained', prefix='backbone.',
                            checkpoint=str(tmp_path / 'student.pth')))
    backbone.init_weights()
    state = backbone.state_dict()
    src = ckpt['pos_embed']
    if grid is None:
        torch.testing.assert_close(state['pos_embed'], src[:, 1:])
        assert 'cls_token' not in state
    else:  # independent reference: keep the CLS slot, bicubic-resize the 14 x 14 grid
        C = src.shape[-1]
        resized = F.interpolate(src[:, 1:].reshape(1, 14, 14, C).permute(0, 3, 1, 2),
                                size=grid, mode='bicubic', align_corners=False)
        torch.testing.assert_close(state['pos_embed'], torch.cat(
            [src[:, :1], resized.flatten(2).transpose(1, 2)], dim=1))
    for key, value in state.items():
        if key != 'pos_embed' and 'rel_pos' not in key:
            assert torch.equal(value, ckpt[key]), key
    assert 'ln1.weight' not in state  # raw block outputs: the final norm is unused, logged


def test_pretrained_loading_errors_name_the_problem(tmp_path):
    path = next(p for p in BENCH if 'vit-tiny' in p.name and 'simplefpn' in p.name)

    def load(checkpoint):
        _, backbone, _ = build_backbone_neck(
            path, init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=checkpoint))
        backbone.init_weights()

    with pytest.raises(FileNotFoundError, match='model.backbone.init_cfg.checkpoint'):
        load(str(tmp_path / 'absent.pth'))
    save_student(tmp_path / 'small.pth', arch='vit-small')
    with pytest.raises(RuntimeError, match=r'Shape mismatches: \[.*patch_embed'):
        load(str(tmp_path / 'small.pth'))
    save_student(tmp_path / 'partial.pth', drop=('layers.11.ffn.layers.1.weight',))
    with pytest.raises(RuntimeError, match=r"Missing: \['layers.11.ffn.layers.1.weight'\]"):
        load(str(tmp_path / 'partial.pth'))
