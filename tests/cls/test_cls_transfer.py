"""ImageNet-1K transfer configs: the MAE fine-tuning / linear-probe recipes with the DMT
student, head widths, student loading, and a linear probe that really freezes the student.
(Toy training runs: tests/cls/test_cls_toy.py.)"""
import copy

import pytest
import torch
from conftest import CONFIGS
from mmengine.config import Config
from mmengine.registry import init_default_scope

CLS = CONFIGS / 'benchmarks' / 'classification'
WIDTHS = {'tiny': 192, 'small': 384, 'base': 768}
FINETUNE = {'tiny': 'dmt-vit-tiny-p16_8xb128-coslr-300e_in1k.py',
            'small': 'dmt-vit-small-p16_8xb128-coslr-200e_in1k.py',
            'base': 'dmt-vit-base-p16_8xb128-coslr-100e_in1k.py'}


def linear_config(arch):
    return Config.fromfile(str(CLS / f'dmt-vit-{arch}-p16_8xb2048-linear-coslr-90e_in1k.py'))


def finetune_config(arch):
    return Config.fromfile(str(CLS / FINETUNE[arch]))


def build_classifier(cfg, checkpoint=None):
    """The model as the Runner builds it (the top-level data_preprocessor included)."""
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS

    import dmt_mm.models  # noqa: F401
    init_default_scope('mmpretrain')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.get('data_preprocessor')))
    if checkpoint is None:
        model_cfg.backbone.init_cfg = None
    else:
        model_cfg.backbone.init_cfg.checkpoint = str(checkpoint)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def make_student_checkpoint(path, arch='vit-tiny', seed=0, **kwargs):
    """A student in extract_student.py's format: {'state_dict': {'backbone.<key>': ...}}."""
    from dmt_mm.models.backbones.dmt_vit import DMTViT
    torch.manual_seed(seed)
    vit = DMTViT(arch=arch, **kwargs)
    for p in vit.parameters():
        p.data.normal_(0, 0.02)
    state = {f'backbone.{k}': v.clone() for k, v in vit.state_dict().items()}
    torch.save({'state_dict': state}, path)
    return {k[len('backbone.'):]: v for k, v in state.items()}


def batch(n=4, size=224, num_classes=1000):
    from mmpretrain.structures import DataSample
    torch.manual_seed(1)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                        for _ in range(n)],
                data_samples=[DataSample().set_gt_label(i % num_classes) for i in range(n)])


# --- recipes (their values against the sources: tests/cls/test_cls_protocols.py) ----------------
@pytest.mark.parametrize('arch', list(WIDTHS))
def test_finetune_config_takes_the_student(arch):
    cfg = finetune_config(arch)
    backbone = cfg.model.backbone
    assert backbone.type == 'DMTViT' and backbone.arch == f'vit-{arch}'
    assert f'vit-{arch}' in FINETUNE[arch]
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.head.in_channels == WIDTHS[arch]
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    # the cosine phase ends with the training, whatever the size's epochs
    assert cfg.param_scheduler[-1].end == cfg.train_cfg.max_epochs
    assert cfg.param_scheduler[-1].T_max == cfg.train_cfg.max_epochs - cfg.param_scheduler[0].end


@pytest.mark.parametrize('arch', list(WIDTHS))
def test_linear_probe_recipe_freezes_every_student_parameter(arch):
    cfg = linear_config(arch)
    assert cfg.model.backbone.type == 'DMTViT' and cfg.model.backbone.arch == f'vit-{arch}'
    assert cfg.model.backbone.out_type == 'cls_token' and cfg.model.backbone.final_norm
    assert cfg.model.neck == dict(type='ClsBatchNormNeck', input_features=WIDTHS[arch])
    assert cfg.model.head.in_channels == WIDTHS[arch]
    assert cfg.optim_wrapper.optimizer.type == 'LARS' and cfg.train_cfg.max_epochs == 90
    assert cfg.auto_scale_lr.base_batch_size == cfg.train_dataloader.batch_size * 8 == 16384
    with torch.device('meta'):
        import mmpretrain.models  # noqa: F401
        from mmpretrain.registry import MODELS

        import dmt_mm.models  # noqa: F401
        init_default_scope('mmpretrain')
        model = MODELS.build(cfg.model)
    assert model.backbone.embed_dims == WIDTHS[arch]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['finetune', 'linear'])
def test_student_loads_and_head_takes_its_width(kind, tmp_path):
    """extract_student-format checkpoint -> every student tensor the classifier uses arrives
    unchanged; logits have 1000 classes (real ViT-T forward on CPU)."""
    cfg = finetune_config('tiny') if kind == 'finetune' else linear_config('tiny')
    student = make_student_checkpoint(tmp_path / 'student.pth')
    model = build_classifier(cfg, tmp_path / 'student.pth')
    backbone = model.backbone.state_dict()
    # the fine-tune recipe pools patch tokens through a new norm (ln2) instead of the
    # student's final norm (ln1), as MAE does; the linear probe uses the CLS token after ln1
    unused = {'ln1.weight', 'ln1.bias'} if kind == 'finetune' else set()
    new = {'ln2.weight', 'ln2.bias'} if kind == 'finetune' else set()
    assert set(student) - set(backbone) == unused
    assert set(backbone) - set(student) == new
    for key in set(backbone) & set(student):
        torch.testing.assert_close(backbone[key], student[key], rtol=0, atol=0, msg=key)
    model.eval()
    data = model.data_preprocessor(batch(2), False)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
        logits = model(data['inputs'], mode='tensor')
    assert feats[-1].shape == (2, 192)
    assert logits.shape == (2, 1000)


@pytest.mark.slow
def test_linear_probe_step_changes_only_the_head(tmp_path):
    """Two LARS steps of the ViT-T linear recipe: every student tensor (parameters and
    buffers) stays bit-identical, the head moves."""
    from mmengine.optim import build_optim_wrapper
    cfg = linear_config('tiny')
    make_student_checkpoint(tmp_path / 'student.pth')
    model = build_classifier(cfg, tmp_path / 'student.pth')
    optim_cfg = dict(type='OptimWrapper', optimizer=copy.deepcopy(cfg.optim_wrapper.optimizer))
    optim_cfg['optimizer']['lr'] = 0.1  # the recipe's LARS, lr for a batch of 4
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for _ in range(2):
        losses = model.train_step(batch(4), optim_wrapper)
    assert torch.isfinite(losses['loss'])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not {k for k in changed if k.startswith('backbone.')}
    assert 'head.layers.head.weight' in changed and 'head.layers.head.bias' in changed
    assert 'neck.bn.running_mean' in changed  # MAE's BatchNorm neck has statistics only
