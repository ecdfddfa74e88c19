"""LayerDecayOptimWrapperConstructor on detection, segmentation and classification models.

The lr of every parameter group is checked against the BEiT/ViTDet rule written out here:
with L blocks and decay d, block i gets d ** (L - i), patch/position embedding and CLS token
d ** (L + 1), everything else (final norm, neck, heads) the full lr. Weight decay: none on
the position embedding and 1-D parameters when the config says so.
"""
import pytest
import torch
from conftest import CONFIGS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import dmt_mm.det  # noqa: F401
import dmt_mm.engine  # noqa: F401
import dmt_mm.models  # noqa: F401

DECAY, LR, WD = 0.8, 1e-3, 0.05
VIT = dict(type='mmpretrain.DMTViT',
           arch=dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64),
           img_size=64, patch_size=16, out_type='featmap', out_indices=[2])


def optim_cfg(**paramwise):
    return dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
                constructor='LayerDecayOptimWrapperConstructor',
                paramwise_cfg=paramwise or dict(layer_decay_rate=DECAY, flat_decay_mult=0.0,
                                                custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                                             '.cls_token': dict(decay_mult=0.0)}))


def expected_scale(name, num_layers):
    if not name.startswith('backbone.'):
        return 1.0
    rest = name[len('backbone.'):]
    if rest.startswith(('patch_embed.', 'pos_embed', 'cls_token')):
        return DECAY ** (num_layers + 1)
    if rest.startswith('layers.'):
        return DECAY ** (num_layers - int(rest.split('.')[1]))
    return 1.0  # final norm


def check_groups(model, num_layers):
    groups = build_optim_wrapper(model, optim_cfg()).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert sum(len(g['params']) for g in groups) == len(names)
    seen = {}
    for group in groups:
        (param,) = group['params']
        name = names[id(param)]
        seen[name] = group['lr'] / LR
        assert group['lr'] == pytest.approx(LR * expected_scale(name, num_layers)), name
        no_decay = param.ndim == 1 or name.endswith(('pos_embed', 'cls_token'))
        assert group['weight_decay'] == (0.0 if no_decay else WD), name
    return seen


def test_detector_groups():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(CONFIGS / 'toy' /
                              'cascade-mask-rcnn_vit-toy-simplefpn_1xb4-300it_toyworld.py'))
    model = MODELS.build(cfg.model)
    seen = check_groups(model, num_layers=4)
    # every depth is represented: patch embed, each block, neck and heads at the full lr
    assert seen['backbone.patch_embed.projection.weight'] == pytest.approx(DECAY ** 5)
    assert seen['backbone.pos_embed'] == pytest.approx(DECAY ** 5)
    for i in range(4):
        assert seen[f'backbone.layers.{i}.attn.qkv.weight'] == pytest.approx(DECAY ** (4 - i))
    assert seen['neck.lateral_convs.0.conv.weight'] == 1.0
    assert seen['roi_head.bbox_head.2.fc_cls.weight'] == 1.0
    assert seen['rpn_head.rpn_conv.weight'] == 1.0


def test_segmentor_groups_with_cls_token():
    init_default_scope('mmseg')
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS
    model = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(VIT, with_cls_token=True),
        decode_head=dict(type='FCNHead', in_channels=32, channels=16, num_convs=1,
                         num_classes=3, norm_cfg=dict(type='BN'))))
    seen = check_groups(model, num_layers=3)
    assert seen['backbone.cls_token'] == pytest.approx(DECAY ** 4)
    assert seen['decode_head.conv_seg.weight'] == 1.0


def test_classifier_groups():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(VIT, type='DMTViT', out_type='cls_token'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))
    seen = check_groups(model, num_layers=3)
    assert seen['backbone.layers.0.ffn.layers.1.weight'] == pytest.approx(DECAY ** 3)
    assert seen['backbone.ln1.weight'] == 1.0 and seen['head.fc.weight'] == 1.0


def test_scheduler_keeps_the_ratios():
    """LinearLR warm-up scales every group alike, so the layer-wise ratios survive it."""
    from mmengine.optim import LinearLR
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(type='ImageClassifier', backbone=dict(VIT, type='DMTViT'),
                              head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))
    wrapper = build_optim_wrapper(model, optim_cfg())
    before = [g['lr'] for g in wrapper.param_groups]
    scheduler = LinearLR(wrapper, start_factor=0.1, by_epoch=False, begin=0, end=10)
    for _ in range(3):
        scheduler.step()
    after = [g['lr'] for g in wrapper.param_groups]
    factor = after[0] / before[0]
    assert 0.1 < factor < 1
    assert after == pytest.approx([b * factor for b in before])


def test_bad_configs_are_refused():
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(type='ImageClassifier', backbone=dict(VIT, type='DMTViT'),
                              head=dict(type='LinearClsHead', num_classes=5, in_channels=32)))
    with pytest.raises(ValueError, match='layer_decay_rate'):  # mmdet's ConvNeXt-style keys
        build_optim_wrapper(model, optim_cfg(decay_rate=0.7, decay_type='layer_wise',
                                             num_layers=12))
    with pytest.raises(ValueError, match='decay_mult'):
        build_optim_wrapper(model, optim_cfg(layer_decay_rate=0.7,
                                             custom_keys={'head': dict(lr_mult=10.0)}))
    no_depth = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(NotImplementedError, match='get_layer_depth'):
        build_optim_wrapper(no_depth, optim_cfg(layer_decay_rate=0.7))
