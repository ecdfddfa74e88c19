"""The COCO protocols against their sources.

* every COCO benchmark config (iBOT protocol, ViTDet protocol; T / S / B) against the
  reference table transcribed from bytedance/ibot / facebookresearch/detectron2, through the
  protocol cards' tables (tests/protocols.py);
* ViTDet: train and test images reach the backbone on the same 1024 x 1024 canvas (64 x 64
  tokens), for real COCO images;
* SimpleFPN against a transcription of detectron2's ``SimpleFeaturePyramid`` (values);
* windowed + global attention with decomposed relative position bias against the official
  ViTDet attention (segment-anything's image encoder is detectron2's ViTDet code);
* a student checkpoint without relative-position tables loads into the ViTDet backbone with
  the tables at zero, everything else strict.
"""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import CONFIGS, SHARED_DATA, TEST_DATA
from mmengine.config import Config
from mmengine.registry import init_default_scope
from protocols import check_protocol

import dmt_mm.det  # noqa: F401  (registers SimpleFPN)
import dmt_mm.engine  # noqa: F401  (safe checkpoint loader)
import dmt_mm.models  # noqa: F401
from dmt_mm.models.backbones.dmt_vit import DMTViT

MMDET = CONFIGS / 'benchmarks' / 'mmdet'


@pytest.mark.parametrize('protocol', ['coco_ibot', 'coco_vitdet'])
def test_configs_match_the_source_or_the_card_says_why(protocol):
    problems = check_protocol(protocol)
    assert not problems, '\n'.join(problems)


def vitdet_config(arch='tiny'):
    return Config.fromfile(str(next(MMDET.glob(f'*vit-{arch}-p16-win14-simplefpn_*.py'))))


# --- finding: the test canvas --------------------------------------------------------------
def real_coco_sizes():
    """(height, width) of real COCO images: the image in tests/data, and the 100 val2014
    images of the shared fixture when it is there."""
    sizes = {(425, 640)}  # tests/data/coco_real_mini/images/000000000785.jpg
    shared = SHARED_DATA / 'coco_val2014_100_eval' / 'instances_val2014_100.json'
    if shared.exists():
        sizes |= {(i['height'], i['width']) for i in json.loads(shared.read_text())['images']}
    return sorted(sizes)


def padded_shape(cfg, pipeline, image_path, training, seed=0):
    """The input size the backbone sees: the config's pipeline on the image, then its data
    preprocessor."""
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    np.random.seed(seed)
    results = Compose(copy.deepcopy(pipeline))(dict(
        img_path=str(image_path), img_id=0, instances=[dict(
            bbox=[100., 100., 300., 300.], bbox_label=0, ignore_flag=0,
            mask=[[100., 100., 300., 100., 300., 300., 100., 300.]])]))
    preprocessor = MODELS.build(copy.deepcopy(cfg.model.data_preprocessor))
    batch = preprocessor(dict(inputs=[results['inputs']],
                              data_samples=[results['data_samples']]), training)
    return tuple(batch['inputs'].shape[-2:])


def test_vitdet_test_images_are_padded_to_the_training_canvas(tmp_path):
    import cv2
    cfg = vitdet_config()
    real = TEST_DATA / 'coco_real_mini' / 'images' / '000000000785.jpg'
    train = [t for t in cfg.train_dataloader.dataset.dataset.pipeline
             if t.type not in ('LoadAnnotations', 'FilterAnnotations')]
    train.insert(1, dict(type='LoadAnnotations', with_bbox=True, with_mask=True))
    test = [t for t in cfg.test_dataloader.dataset.pipeline if t.type != 'LoadAnnotations']
    grids = set()
    for seed in range(4):  # LSJ scales 0.1-2.0
        grids.add(tuple(s // 16 for s in padded_shape(cfg, train, real, True, seed)))
    for h, w in real_coco_sizes():
        image = tmp_path / f'{h}x{w}.jpg'
        cv2.imwrite(str(image), np.full((h, w, 3), 128, np.uint8))
        grids.add(tuple(s // 16 for s in padded_shape(cfg, test, image, False)))
    grids.add(tuple(s // 16 for s in padded_shape(cfg, test, real, False)))
    assert grids == {(64, 64)}  # one token grid: the position and relative tables' canvas


# --- finding: SimpleFPN = conv + LN, no activation ----------------------------------------
class D2LayerNorm(nn.Module):
    """detectron2.layers.LayerNorm (channels-first, eps 1e-6)."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class D2ConvNorm(nn.Conv2d):
    """detectron2.layers.Conv2d(..., bias=False, norm=LayerNorm): conv, then norm, no
    activation (activation=None)."""

    def __init__(self, cin, cout, k, padding=0):
        super().__init__(cin, cout, k, padding=padding, bias=False)
        self.norm = D2LayerNorm(cout)

    def forward(self, x):
        return self.norm(super().forward(x))


class D2SimpleFeaturePyramid(nn.Module):
    """The stages of detectron2 ``SimpleFeaturePyramid`` (detectron2/modeling/backbone/vit.py,
    facebookresearch/detectron2 @ 02b5c4e2, Apache-2.0), scale factors (4, 2, 1, 0.5),
    norm "LN", ``LastLevelMaxPool`` top block; transcribed here as the reference."""

    def __init__(self, dim, out_channels):
        super().__init__()
        self.stages = nn.ModuleList()
        for scale in (4.0, 2.0, 1.0, 0.5):
            out_dim = dim
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
                          D2LayerNorm(dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2)]
                out_dim = dim // 4
            elif scale == 2.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)]
                out_dim = dim // 2
            elif scale == 1.0:
                layers = []
            else:
                layers = [nn.MaxPool2d(kernel_size=2, stride=2)]
            layers += [D2ConvNorm(out_dim, out_channels, 1),
                       D2ConvNorm(out_channels, out_channels, 3, padding=1)]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x):
        results = [stage(x) for stage in self.stages]
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results


def copy_into_reference(ours, ref):
    """Our SimpleFPN's weights into the reference, module by module."""
    with torch.no_grad():
        for i, stage in enumerate(ref.stages):
            scale = ours.scales[i]
            convs = [m for m in stage if isinstance(m, D2ConvNorm)]
            for src, dst in zip((ours.lateral_convs[i], ours.fpn_convs[i]), convs):
                assert src.conv.bias is None  # conv + norm: no conv bias, as detectron2
                dst.weight.copy_(src.conv.weight)
                dst.norm.weight.copy_(src.ln.weight)
                dst.norm.bias.copy_(src.ln.bias)
            if i == 0:
                for j in (0, 1, 3):
                    stage[j].load_state_dict(scale[j].state_dict())
            elif i == 1:
                stage[0].load_state_dict(scale.state_dict())


@torch.no_grad()
def test_simple_fpn_equals_detectron2_simple_feature_pyramid():
    from mmdet.registry import MODELS
    cfg = vitdet_config()
    init_default_scope('mmdet')
    neck_cfg = dict(cfg.model.neck, in_channels=32, out_channels=16)
    torch.manual_seed(0)
    ours = MODELS.build(neck_cfg).eval()
    for p in ours.parameters():  # non-trivial norms and biases everywhere
        p.normal_(0, 0.5)
    ref = D2SimpleFeaturePyramid(32, 16).eval()
    copy_into_reference(ours, ref)
    x = torch.randn(2, 32, 8, 12)
    outs, expected = ours(x), ref(x)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 32, 48), (2, 16, 16, 24), (2, 16, 8, 12),
                                              (2, 16, 4, 6), (2, 16, 2, 3)]
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, atol=1e-5, rtol=1e-4)
    assert all((o < 0).any() for o in outs)  # no activation clips the levels


# --- finding: relative position bias ---------------------------------------------------------
ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def sam_block(layer, window, input_size):
    """segment-anything's ViTDet block with ``layer``'s weights."""
    from segment_anything.modeling.image_encoder import Block
    block = Block(32, 2, mlp_ratio=2.0, qkv_bias=True,
                  norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6), use_rel_pos=True,
                  window_size=window, input_size=input_size)
    block.load_state_dict({
        'norm1.weight': layer.ln1.weight, 'norm1.bias': layer.ln1.bias,
        'attn.qkv.weight': layer.attn.qkv.weight, 'attn.qkv.bias': layer.attn.qkv.bias,
        'attn.proj.weight': layer.attn.proj.weight, 'attn.proj.bias': layer.attn.proj.bias,
        'attn.rel_pos_h': layer.attn.rel_pos_h, 'attn.rel_pos_w': layer.attn.rel_pos_w,
        'norm2.weight': layer.ln2.weight, 'norm2.bias': layer.ln2.bias,
        'mlp.lin1.weight': layer.ffn.layers[0][0].weight,
        'mlp.lin1.bias': layer.ffn.layers[0][0].bias,
        'mlp.lin2.weight': layer.ffn.layers[1].weight, 'mlp.lin2.bias': layer.ffn.layers[1].bias})
    return block.eval()


@pytest.mark.parametrize('image_hw', [(128, 128), (112, 80)])  # the tables' grid; another one
@torch.no_grad()
def test_windowed_and_global_attention_with_rel_pos_equal_vitdet(image_hw):
    """Block 0 windowed (3 x 3 windows, padding), block 1 global with tables sized for a
    128-px canvas (8 x 8 tokens; a 7 x 5 grid resizes them as ViTDet does)."""
    pytest.importorskip('segment_anything', reason='segment-anything==1.0 (detectron2 ViTDet '
                        'attention) is in requirements/tests.txt')
    torch.manual_seed(0)
    model = DMTViT(arch=ARCH, img_size=64, patch_size=16, out_type='featmap',
                   with_cls_token=False, final_norm=False, window_size=3,
                   global_attn_indices=[1], use_rel_pos=True, rel_pos_img_size=128,
                   out_indices=[1])
    model.init_weights()
    model.eval()
    assert [tuple(model.layers[i].attn.rel_pos_h.shape) for i in (0, 1)] == [(5, 16), (15, 16)]
    assert all(float(p.abs().max()) == 0 for n, p in model.named_parameters() if 'rel_pos' in n)
    for name, p in model.named_parameters():
        if 'rel_pos' in name:
            p.normal_()  # zero tables would not test them
    x = torch.randn(2, 3, *image_hw)
    tokens, grid = model.patch_embed(x)
    tokens = tokens + F.interpolate(
        model.pos_embed.reshape(1, 4, 4, -1).permute(0, 3, 1, 2), size=grid, mode='bicubic',
        align_corners=False).flatten(2).transpose(1, 2)
    h = tokens.view(2, *grid, 32)
    h = sam_block(model.layers[0], 3, (8, 8))(h)
    h = sam_block(model.layers[1], 0, (8, 8))(h)
    torch.testing.assert_close(model(x)[0], h.permute(0, 3, 1, 2), atol=1e-5, rtol=1e-4)
    # and the tables matter: the same blocks without them give another result
    plain = DMTViT(arch=ARCH, img_size=64, patch_size=16, out_type='featmap',
                   with_cls_token=False, final_norm=False, window_size=3,
                   global_attn_indices=[1], out_indices=[1])
    plain.eval()  # (mmpretrain backbones' train() returns None: no chaining)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if 'rel_pos' not in k})
    assert (plain(x)[0] - model(x)[0]).abs().max() > 1e-2


def test_vitdet_backbone_has_rel_pos_tables_sized_as_vitdet():
    from mmdet.registry import MODELS
    cfg = vitdet_config('base')
    init_default_scope('mmdet')
    with torch.device('meta'):
        backbone = MODELS.build(cfg.model.backbone)
    shapes = {i: tuple(layer.attn.rel_pos_h.shape) for i, layer in enumerate(backbone.layers)}
    # detectron2 ViT-B: 2 * 14 - 1 rows in windowed blocks, 2 * 64 - 1 in global ones, per head dim
    assert shapes == {i: ((127, 64) if i in (2, 5, 8, 11) else (27, 64)) for i in range(12)}


NARROW = dict(embed_dims=32, num_layers=12, num_heads=2, feedforward_channels=64)  # cheap ViT


def save_student(path, extra=None):
    """A DMT-style student checkpoint (224 px, CLS token, no relative-position tables) of a
    12-block ViT narrower than ViT-T (the loading logic is the same, the test faster)."""
    torch.manual_seed(0)
    student = DMTViT(arch=NARROW, img_size=224, patch_size=16, with_cls_token=True)
    with torch.no_grad():
        for p in student.parameters():
            p.normal_()
    state = {f'backbone.{k}': v for k, v in student.state_dict().items()}
    state.update(extra or {})
    torch.save(dict(state_dict=state), path)
    return student.state_dict()


def load_vitdet_backbone(checkpoint):
    from mmdet.registry import MODELS
    cfg = vitdet_config()
    init_default_scope('mmdet')
    cfg.model.backbone.update(arch=NARROW, init_cfg=dict(cfg.model.backbone.init_cfg,
                                                         checkpoint=str(checkpoint)))
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    return backbone


def test_student_without_rel_pos_tables_loads_with_zero_tables(tmp_path):
    ckpt = save_student(tmp_path / 'student.pth')
    state = load_vitdet_backbone(tmp_path / 'student.pth').state_dict()
    tables = {k for k in state if k.endswith(('rel_pos_h', 'rel_pos_w'))}
    assert len(tables) == 24
    assert all(float(state[k].abs().max()) == 0 for k in tables)
    for key, value in state.items():
        if key not in tables and key != 'pos_embed':
            assert torch.equal(value, ckpt[key]), key
    # the 224-px table stays at 14 x 14 (interpolated in forward), its CLS slot dropped
    torch.testing.assert_close(state['pos_embed'], ckpt['pos_embed'][:, 1:])


def test_checkpoint_tables_are_loaded_and_other_keys_stay_strict(tmp_path):
    table = torch.randn(27, 16)
    save_student(tmp_path / 'with.pth', extra={'backbone.layers.0.attn.rel_pos_h': table})
    state = load_vitdet_backbone(tmp_path / 'with.pth').state_dict()
    assert torch.equal(state['layers.0.attn.rel_pos_h'], table)
    assert float(state['layers.0.attn.rel_pos_w'].abs().max()) == 0
    save_student(tmp_path / 'bad.pth', extra={'backbone.layers.0.attn.rel_pos_h':
                                              torch.randn(5, 16)})
    with pytest.raises(RuntimeError, match=r'Shape mismatches: \[.*rel_pos_h'):
        load_vitdet_backbone(tmp_path / 'bad.pth')
    ckpt = torch.load(tmp_path / 'with.pth')
    del ckpt['state_dict']['backbone.layers.3.attn.qkv.weight']
    torch.save(ckpt, tmp_path / 'partial.pth')
    with pytest.raises(RuntimeError, match=r"Missing: \['layers.3.attn.qkv.weight'\]"):
        load_vitdet_backbone(tmp_path / 'partial.pth')


def test_window_and_rel_pos_refuse_a_cls_token():
    with pytest.raises(ValueError, match='with_cls_token=False'):
        DMTViT(arch=ARCH, img_size=64, use_rel_pos=True, with_cls_token=True)
