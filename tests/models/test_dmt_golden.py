"""Checkpoints of the flat DMT layout load into today's DMT, and training from them gives the
same losses: the golden fixture (tests/data/dmt_golden, recorded with the pre-refactor code)
holds initial state_dicts in the old layout and the loss terms of 4 train steps on a fixed
batch; here they are loaded through the key map and every logged value is reproduced."""
import importlib.util

import pytest
import torch
from conftest import CONFIGS, TEST_DATA
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint
from mmpretrain.registry import MODELS

import dmt_mm.engine  # noqa: F401  (safe checkpoint loader)
import dmt_mm.models  # noqa: F401
from dmt_mm.models.algorithms import upgrade_state_dict

GOLDEN = TEST_DATA / 'dmt_golden'
_spec = importlib.util.spec_from_file_location('make_golden', GOLDEN / 'make_golden.py')
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

TINY_OPTIM = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2))


def tiny_teacher(name, **kwargs):
    return dict(type='FrozenViTTeacher', name=name, **kwargs,
                backbone=dict(arch=make_golden.TINY_TEACHER, img_size=32, patch_size=8))


def tiny(teachers, generator=None, head=None, **kwargs):
    """The tiny cases of make_golden.py, written in the current config layout."""
    return dict(type='DMT', backbone=dict(arch=make_golden.TINY_STUDENT, img_size=32,
                                          patch_size=8),
                target_generator=dict(teachers=teachers, allow_random_teachers=True,
                                      **(generator or {})),
                head=dict(type='DMTDistillHead', **(head or {})), **kwargs)


def case(name):
    if name == 'toy':
        cfg = Config.fromfile(str(CONFIGS / 'toy' / 'dmt_vit-toy-p16_3xvit-toy_1xb16-40it_'
                                            'toyworld.py'))
        return cfg.model.to_dict(), cfg.optim_wrapper.to_dict()
    if name == 'tiny_masked_learned':
        return tiny([tiny_teacher('a'), tiny_teacher('b'), tiny_teacher('c', img_size=48)],
                    generator=dict(target_norm=['ema_std', 'phis', 'ln']),
                    head=dict(fusion='learned', teacher_drop_prob=0.3),
                    neck=dict(type='MAEPretrainDecoder', decoder_embed_dim=8, decoder_depth=1,
                              decoder_num_heads=2),
                    mask_ratio=0.5, mask_loss_on='masked'), TINY_OPTIM
    assert name == 'tiny_multiblock_adaptive'
    return tiny([tiny_teacher('a'), tiny_teacher('b')], generator=dict(target_norm='ema_std'),
                head=dict(sfd=dict(teacher_layers=[1, -1], loss=dict(type='MSEDistillLoss'),
                                   adaptor=dict(type='DMTSpatialAdaptor', hidden_channels=8)),
                          tfd=dict(cls_weight=0.3, loss_weight=0.7),
                          fusion=dict(mode='adaptive', temperature=0.5))), TINY_OPTIM


CASES = ['toy', 'tiny_masked_learned', 'tiny_multiblock_adaptive']


@pytest.mark.slow
@pytest.mark.parametrize('name', CASES)
def test_old_checkpoint_loads_and_losses_are_identical(name, tmp_path):
    golden = torch.load(GOLDEN / f'{name}.pth', weights_only=True)
    old_state = golden['state_dict']
    assert any(k.startswith(('tfd_heads.', 'sfd_adaptors.')) for k in old_state)
    path = tmp_path / 'old_layout.pth'
    torch.save(dict(state_dict=old_state), path)
    model_cfg, optim_cfg = case(name)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, str(path), strict=True)  # mmengine's load path, no key missing
    new_state = model.state_dict()
    assert len(new_state) == len(old_state)
    upgraded = dict(old_state)
    upgrade_state_dict(upgraded)
    for key, value in new_state.items():
        assert torch.equal(value, upgraded[key]), key
    # parameters come in the old order, so optimizer states saved by the old code resume
    params = [k for k, _ in model.named_parameters()]
    renamed = {id(v): k for k, v in upgraded.items()}
    assert [renamed[id(old_state[k])] for k in old_state if renamed[id(old_state[k])] in
            params] == params

    for k, teacher in enumerate(model.target_generator.teachers):
        make_golden.fill_teacher(teacher.backbone, 1000 + k)
    torch.manual_seed(1)
    history = make_golden.run_steps(model, optim_cfg, golden['images'])
    for step, (got, want) in enumerate(zip(history, golden['losses'])):
        assert list(got) == list(want), step
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-6), (step, key)
    assert history[-1]['loss'] < history[0]['loss']


def test_key_map_of_every_old_family():
    old = {'backbone.cls_token': 0, 'tfd_heads.mae.fc1.weight': 1,
           'sfd_adaptors.ibot.conv1.weight': 2, 'fusion_log_vars.tfd': 3,
           'target_norms.mae_cls.mean': 4, 'target_norms.moco_v3_11.cov': 5,
           'decoder.mask_token': 6, 'teachers.0.backbone.cls_token': 7}
    state = {'module.' + k: v for k, v in old.items()}
    assert upgrade_state_dict(state, 'module.') == 7
    assert state == {'module.' + k: v for k, v in {
        'backbone.cls_token': 0, 'head.tfd_heads.mae.fc1.weight': 1,
        'head.sfd_adaptors.ibot.conv1.weight': 2, 'head.fusion_log_vars.tfd': 3,
        'target_generator.target_norms.mae.cls.mean': 4,
        'target_generator.target_norms.moco_v3.11.cov': 5, 'neck.mask_token': 6,
        'target_generator.teachers.0.backbone.cls_token': 7}.items()}
    assert upgrade_state_dict(state, 'module.') == 0  # current keys stay as they are
