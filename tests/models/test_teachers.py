"""FrozenViTTeacher invariants and the ViT arch names.

A teacher never trains (no trainable tensors, eval mode for good, no autograd graph), never
enters an optimizer or a saved checkpoint, re-normalises pixels exactly as a hand
computation says, and resizes inputs for teachers of another patch size.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

from dmt_mm.models.backbones import DMTViT
from dmt_mm.models.teachers import FrozenViTTeacher

ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
DATA_MEAN, DATA_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def make_teacher(**kwargs):
    backbone = dict(arch=ARCH, img_size=32, patch_size=16, drop_rate=0.5, drop_path_rate=0.5)
    backbone.update(kwargs.pop('backbone', {}))
    return FrozenViTTeacher(backbone=backbone, **kwargs)


@pytest.mark.parametrize('arch,published', [
    ('vit-tiny', 5_717_416),    # timm deit_tiny_patch16_224 / ViT-T/16
    ('vit-small', 22_050_664),  # timm deit_small_patch16_224 / ViT-S/16
    ('vit-base', 86_567_656),   # timm vit_base_patch16_224 / ViT-B/16
])
def test_arch_parameter_counts(arch, published):
    """Backbone + a 1000-class linear head equals the published count of the model."""
    with torch.device('meta'):
        vit = DMTViT(arch=arch)
    dim = vit.embed_dims
    assert sum(p.numel() for p in vit.parameters()) + dim * 1000 + 1000 == published


def test_mmpretrain_small_is_not_vit_small():
    with torch.device('meta'):
        small, vit_s = DMTViT(arch='small'), DMTViT(arch='vit-small')
    assert (small.embed_dims, small.num_layers) == (768, 8)
    assert (vit_s.embed_dims, vit_s.num_layers) == (384, 12)


def test_nothing_trainable_and_eval_forever():
    teacher = make_teacher()
    assert list(teacher.parameters()) == []
    assert all(not p.requires_grad for p in teacher.backbone.parameters())
    teacher.train()
    parent = nn.Sequential(nn.Linear(2, 2), teacher).train()
    parent.requires_grad_(True)  # a parent's blanket unfreeze does not reach the teacher
    assert not teacher.training and not teacher.backbone.training
    assert all(not m.training for m in teacher.backbone.modules())
    assert all(not p.requires_grad for p in teacher.backbone.parameters())
    # drop_rate / drop_path_rate 0.5 would make two calls differ in train mode
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher(x)['patch'], teacher(x)['patch'], atol=0, rtol=0)


def test_no_autograd_graph():
    teacher = make_teacher(out_layers=[0])
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = teacher(x)
    for t in (out['cls'], out['patch'], out['layers'][0]):
        assert not t.requires_grad and t.grad_fn is None
    assert torch.is_grad_enabled()


def test_outputs_contract():
    teacher = make_teacher(out_layers=[0, -1])
    x = torch.randn(2, 3, 32, 32)
    out = teacher(x)
    ref = teacher.backbone.forward_tokens(x, layers=[0, 1])
    assert out['grid'] == (2, 2)
    torch.testing.assert_close(out['cls'], ref['tokens'][:, 0])
    torch.testing.assert_close(out['patch'], ref['tokens'][:, 1:])
    assert sorted(out['layers']) == [0, 1]
    torch.testing.assert_close(out['layers'][0], ref['layers'][0][:, 1:])


def test_pixel_renormalisation_equals_hand_computation():
    mean, std = (127.5, 127.5, 127.5), (127.5, 64.0, 32.0)  # e.g. a [-1, 1]-scaled teacher
    teacher = make_teacher(mean=mean, std=std, data_mean=DATA_MEAN, data_std=DATA_STD)
    assert teacher.renormalize
    x = torch.randn(2, 3, 32, 32)
    hand = torch.empty_like(x)
    for c in range(3):
        raw = x[:, c] * DATA_STD[c] + DATA_MEAN[c]  # back to 0-255 pixels
        hand[:, c] = (raw - mean[c]) / std[c]
    ref = teacher.backbone.forward_tokens(hand)['tokens']
    torch.testing.assert_close(teacher(x)['patch'], ref[:, 1:], atol=1e-5, rtol=1e-5)
    assert not make_teacher(mean=DATA_MEAN, std=DATA_STD).renormalize
    assert not make_teacher().renormalize


def test_img_size_resizes_for_patch14_teacher():
    teacher = make_teacher(backbone=dict(img_size=28, patch_size=14), img_size=28)
    assert teacher.patch_size == 14
    x = torch.randn(2, 3, 32, 32)
    out = teacher(x)
    assert out['grid'] == (2, 2) and out['patch'].shape == (2, 4, 32)
    hand = F.interpolate(x, size=(28, 28), mode='bicubic', align_corners=False)
    ref = teacher.backbone.forward_tokens(hand)['tokens']
    torch.testing.assert_close(out['patch'], ref[:, 1:], atol=1e-6, rtol=1e-6)


class Distiller(nn.Module):
    """Stand-in for an algorithm holding a student and a teacher."""

    def __init__(self, checkpoint):
        super().__init__()
        self.student = nn.Linear(8, 8)
        self.teachers = nn.ModuleDict(dict(mae=make_teacher(checkpoint=checkpoint)))
        self.teachers.mae.init_weights()


@pytest.fixture(scope='module')
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
    vit = make_teacher().backbone
    torch.save({'state_dict': {'backbone.' + k: v for k, v in vit.state_dict().items()}}, path)
    return str(path)


@pytest.mark.parametrize('paramwise', [False, True])
def test_teacher_never_in_optimizer(teacher_file, paramwise):
    model = Distiller(teacher_file)
    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    if paramwise:
        cfg['paramwise_cfg'] = dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    optim = build_optim_wrapper(model, cfg).optimizer
    in_optim = {id(p) for group in optim.param_groups for p in group['params']}
    assert in_optim == {id(p) for p in model.student.parameters()}


def test_teacher_never_in_checkpoint_and_loads_back(teacher_file, tmp_path):
    model = Distiller(teacher_file)
    x = torch.randn(1, 3, 32, 32)
    before = model.teachers.mae(x)['patch']
    assert list(model.state_dict()) == ['student.weight', 'student.bias']
    torch.save(model.state_dict(), tmp_path / 'run.pth')

    fresh = Distiller(teacher_file)
    fresh.load_state_dict(torch.load(tmp_path / 'run.pth'), strict=True)
    torch.testing.assert_close(fresh.teachers.mae(x)['patch'], before, atol=0, rtol=0)
    torch.testing.assert_close(fresh.student.weight, model.student.weight, atol=0, rtol=0)

    # A checkpoint that did save teacher weights (older runs, other tools) still loads,
    # and the teacher keeps the weights of its own checkpoint file.
    stale = dict(model.state_dict())
    stale.update({f'teachers.mae.backbone.{k}': torch.zeros_like(v)
                  for k, v in model.teachers.mae.backbone.state_dict().items()})
    fresh.load_state_dict(stale, strict=True)
    torch.testing.assert_close(fresh.teachers.mae(x)['patch'], before, atol=0, rtol=0)


def test_device_and_dtype_moves_reach_the_hidden_vit():
    teacher = make_teacher()
    parent = nn.Sequential(nn.Linear(2, 2), teacher).to(torch.float64)
    assert teacher.backbone.cls_token.dtype == torch.float64
    out = teacher(torch.randn(1, 3, 32, 32, dtype=torch.float64))
    assert out['cls'].dtype == torch.float32  # outputs are float32 (the contract)
    del parent
