"""The toy DMT config trains through tools/train.py on CPU: the total loss falls by at least
half and every per-teacher term falls; the saved checkpoint holds no teacher, loads back
strictly, and the student extracted from it loads into the toy detection, segmentation and
classification backbones with zero missing keys."""
import json

import pytest
import torch
from conftest import CONFIGS, TOOLS, run_tool
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from mmpretrain.registry import MODELS

import dmt_mm.engine  # noqa: F401  (safe checkpoint loader)
import dmt_mm.models  # noqa: F401
from dmt_mm.checkpoint.loading import safe_torch_load

pytestmark = pytest.mark.slow  # one 40-iteration training run through tools/train.py

TOY = CONFIGS / 'toy' / 'dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py'
NAMES = ('mae', 'mocov3', 'ibot')


@pytest.fixture(scope='module')
def toy_run(small_toy_world):
    work = small_toy_world / 'work_dirs' / 'dmt_toy'
    run_tool([TOOLS / 'train.py', TOY, '--work-dir', work], cwd=small_toy_world)
    scalars = sorted(work.glob('*/vis_data/scalars.json'))[-1]
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    rows = [r for r in rows if 'loss' in r]
    return work, rows


def _mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def test_total_loss_halves_and_every_term_falls(toy_run):
    _, rows = toy_run
    assert len(rows) == 40  # logged every iteration
    first, last = rows[:3], rows[-3:]
    assert _mean(last, 'loss') <= 0.5 * _mean(first, 'loss'), (first, last)
    for strategy in ('tfd', 'sfd'):
        for name in NAMES:
            key = f'loss_{strategy}_{name}'
            assert _mean(last, key) < _mean(first, key), key
    # the logged total is exactly the sum of the logged terms
    for row in rows:
        terms = sum(v for k, v in row.items() if k.startswith('loss_'))
        assert row['loss'] == pytest.approx(terms, rel=1e-4, abs=1e-6)


def test_checkpoint_has_no_teacher_and_loads_into_a_fresh_model(toy_run):
    work, _ = toy_run
    state = safe_torch_load(str(work / 'iter_40.pth'))['state_dict']
    assert any(k.startswith('backbone.') for k in state)
    assert not any('teachers.' in k for k in state)
    cfg = Config.fromfile(str(TOY))
    model = MODELS.build(cfg.model)
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.backbone.cls_token, state['backbone.cls_token'])


def _backbone_from(config, checkpoint):
    """The backbone config of a toy task config, set to load ``checkpoint``."""
    cfg = Config.fromfile(str(config)).model.backbone
    cfg.type = cfg.type.replace('mmpretrain.', '')
    cfg.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint), prefix='backbone.')
    return cfg


def test_extracted_student_loads_into_det_seg_and_cls_backbones(toy_run, tmp_path):
    work, _ = toy_run
    student = tmp_path / 'student.pth'
    run_tool([TOOLS / 'model_converters' / 'extract_student.py', work / 'iter_40.pth', student],
             cwd=tmp_path)
    det = sorted((CONFIGS / 'toy').glob('cascade-mask-rcnn_vit-toy*.py'))[0]
    seg = sorted((CONFIGS / 'toy').glob('upernet_vit-toy*.py'))[0]
    toy = Config.fromfile(str(TOY)).model.backbone
    cls = dict(type='DMTViT', arch=toy.arch, img_size=64, patch_size=16, out_type='avg_featmap',
               init_cfg=dict(type='Pretrained', checkpoint=str(student), prefix='backbone.'))
    weights = _load_checkpoint_with_prefix('backbone.', str(student))
    for cfg in (_backbone_from(det, student), _backbone_from(seg, student), cls):
        backbone = MODELS.build(cfg)
        backbone.init_weights()  # DMTViT refuses a checkpoint with missing backbone keys
        result = backbone.load_state_dict(weights, strict=False)
        optional = {'ln2.weight', 'ln2.bias'} if backbone.out_type == 'avg_featmap' else set()
        added = backbone.added_weights()  # fine-tuning weights (layer scales, rel-pos tables)
        assert set(result.missing_keys) <= optional | added, result.missing_keys
        for name, value in backbone.state_dict().items():
            if name.endswith(('.gamma1.weight', '.gamma2.weight')):  # kept at their init value
                assert torch.all(value == cfg['layer_scale_init_value']), name
        torch.testing.assert_close(backbone.layers[3].ffn.layers[1].weight,
                                   weights['layers.3.ffn.layers.1.weight'])
