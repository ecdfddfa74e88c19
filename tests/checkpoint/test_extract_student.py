"""extract_student.py: DMT run checkpoint -> student backbone file that the toy detection and
segmentation configs load through ``init_cfg=dict(type='Pretrained', prefix='backbone.')``
with zero missing backbone keys."""
import importlib
import io

import pytest
import torch
from conftest import CONFIGS, TOOLS, run_tool
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

from dmt_mm.checkpoint import AtomicLocalBackend, safe_torch_load
from dmt_mm.checkpoint.format_errors import CheckpointFormatError
from dmt_mm.models.backbones import DMTViT

TOY_ARCH = dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)
DET = sorted((CONFIGS / 'toy').glob('cascade-mask-rcnn_vit-toy*.py'))[0]
SEG = sorted((CONFIGS / 'toy').glob('upernet_vit-toy*.py'))[0]


def dmt_run_checkpoint(path):
    """A checkpoint shaped like a DMT Runner's: student under `backbone.`, the algorithm's
    own heads / normaliser buffers beside it, no teachers; Runner extras (message hub with
    HistoryBuffers, optimizer) that need the run's signature to load."""
    torch.manual_seed(0)
    student = DMTViT(arch=TOY_ARCH, img_size=64, patch_size=16)
    state = {'backbone.' + k: v for k, v in student.state_dict().items()}
    state.update({'tfd_heads.mae.0.weight': torch.randn(96, 64),
                  'sfd_adaptors.ibot.0.weight': torch.randn(96, 64, 3, 3),
                  'target_norms.mae.running_mean': torch.zeros(96)})
    hub = MessageHub.get_instance('extract_student_test')
    hub.update_scalar('train/loss', 1.0)
    checkpoint = {'meta': {'epoch': 3, 'iter': 300, 'seed': 0, 'experiment_name': 'dmt_toy',
                           'cfg': 'model = dict(...)', 'dataset_meta': {'classes': None}},
                  'state_dict': state, 'message_hub': hub.state_dict(),
                  'optimizer': {'state': {}, 'param_groups': []},
                  'ema_state_dict': {'steps': torch.tensor(5),
                                     **{'module.' + k: v * 0.5 for k, v in state.items()}}}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    AtomicLocalBackend().put(buffer.getvalue(), str(path))  # signed like a run's checkpoint
    return student.state_dict()


@pytest.fixture(scope='module')
def extracted(tmp_path_factory):
    folder = tmp_path_factory.mktemp('extract')
    student = dmt_run_checkpoint(folder / 'iter_300.pth')
    dst = folder / 'student.pth'
    run_tool([TOOLS / 'model_converters' / 'extract_student.py', folder / 'iter_300.pth', dst],
             cwd=folder)
    return student, dst


@pytest.mark.slow
def test_output_layout(extracted):
    student, dst = extracted
    out = safe_torch_load(str(dst))  # weights-only, no trust needed
    assert set(out['state_dict']) == {'backbone.' + k for k in student}
    for k, v in student.items():
        torch.testing.assert_close(out['state_dict']['backbone.' + k], v, atol=0, rtol=0)
    assert out['meta']['iter'] == 300 and out['meta']['extracted_from'] == 'iter_300.pth'
    assert 'dataset_meta' not in out['meta']  # only plain values are carried over


def build_from_config(path, checkpoint):
    cfg = Config.fromfile(str(path))
    for module in cfg.custom_imports['imports']:
        importlib.import_module(module)
    importlib.import_module(f'{cfg.default_scope}.models')
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint),
                                       prefix='backbone.')
    from mmengine.registry import MODELS
    with MODELS.switch_scope_and_registry(cfg.default_scope) as models:
        return models.build(cfg.model)


@pytest.mark.slow
@pytest.mark.parametrize('config', [DET, SEG], ids=['det', 'seg'])
def test_round_trip_into_toy_models(extracted, config):
    student, dst = extracted
    model = build_from_config(config, dst)
    model.init_weights()
    backbone = model.backbone.state_dict()
    state = _load_checkpoint_with_prefix('backbone.', str(dst))
    result = model.backbone.load_state_dict(state, strict=False)
    # a student lacks only the weights fine-tuning adds (e.g. the layer scales of mmseg's
    # MAE recipe, which the toy segmentation config inherits)
    assert set(result.missing_keys) == model.backbone.added_weights() - set(state)
    # the only student tensors a task backbone may leave unused: the CLS token (ViTDet
    # style, with_cls_token=False) and the final norm (final_norm=False)
    unused = set(result.unexpected_keys)
    assert unused <= {'cls_token', 'ln1.weight', 'ln1.bias'}
    assert ('cls_token' in unused) == (model.backbone.cls_token is None)
    assert ('ln1.weight' in unused) == (not model.backbone.final_norm)
    # init_weights really loaded the student (pos_embed is resized to the task's grid)
    for k, v in student.items():
        if k not in unused and k != 'pos_embed':
            torch.testing.assert_close(backbone[k], v, atol=0, rtol=0, msg=k)
    assert backbone['pos_embed'].shape[1] == (128 // 16) ** 2 + int('cls_token' in backbone)


@pytest.mark.slow
def test_ema_weights_and_errors(tmp_path):
    import runpy
    tool = runpy.run_path(str(TOOLS / 'model_converters' / 'extract_student.py'))
    student = dmt_run_checkpoint(tmp_path / 'run.pth')
    checkpoint = safe_torch_load(str(tmp_path / 'run.pth'))
    ema, _ = tool['extract_student'](checkpoint, ema=True)
    torch.testing.assert_close(ema['cls_token'], student['cls_token'] * 0.5)
    with pytest.raises(CheckpointFormatError, match="no 'student.' keys"):
        tool['extract_student'](checkpoint, prefix='student.')
    del checkpoint['ema_state_dict']
    with pytest.raises(CheckpointFormatError, match='EMAHook'):
        tool['extract_student'](checkpoint, ema=True)
    # an incomplete student is refused before anything is written
    checkpoint['state_dict'] = {k: v for k, v in checkpoint['state_dict'].items()
                                if not k.startswith('backbone.layers.2.')}
    torch.save({'state_dict': checkpoint['state_dict']}, tmp_path / 'broken.pth')
    proc = run_tool([TOOLS / 'model_converters' / 'extract_student.py', tmp_path / 'broken.pth',
                     tmp_path / 'out.pth'], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and 'layers.2.*' in proc.stdout
    assert not (tmp_path / 'out.pth').exists()


def test_detection_checkpoint_is_refused_unless_asked_for(tmp_path):
    """A checkpoint of a detection run has a student-shaped backbone too, fine-tuned for the
    task: taking it silently would pass a detector's backbone off as the DMT student."""
    import runpy
    tool = runpy.run_path(str(TOOLS / 'model_converters' / 'extract_student.py'))
    student = DMTViT(arch=TOY_ARCH, img_size=64, patch_size=16).state_dict()
    detection = {'state_dict': {**{'backbone.' + k: v for k, v in student.items()},
                                'neck.lateral_convs.0.conv.weight': torch.zeros(8, 64, 1, 1),
                                'rpn_head.rpn_cls.weight': torch.zeros(3, 8, 1, 1),
                                'roi_head.bbox_head.0.fc_cls.weight': torch.zeros(7, 16)}}
    with pytest.raises(CheckpointFormatError, match=r'this is a detection checkpoint \(it '
                       r'holds roi_head\.\*, rpn_head\.\*\), not a DMT pretraining one'):
        tool['extract_student'](detection)
    taken, _ = tool['extract_student'](detection, any_model=True)
    assert set(taken) == set(student)
