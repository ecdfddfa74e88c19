"""The DMT pretraining configs say what docs/dmt.md promises: students, teacher sets, recipe
(AdamW 0.9/0.95, wd 0.05, lr 1.5e-4 x 1024 / 256, cosine with warm-up, 8 x 128, AMP),
baselines, and teacher checkpoints / data root as config fields. Building every config is
tests/test_configs.py's job; here the values are checked (config parsing only, no models)."""
import pytest
from conftest import CONFIGS
from mmengine.config import Config

DMT = CONFIGS / 'dmt'
MAIN = {(arch, ep): DMT / f'dmt_vit-{arch}-p16_mae-mocov3-ibot_8xb128-amp-coslr-{ep}e_in1k.py'
        for arch in ('tiny', 'small', 'base') for ep in (100, 300)}
S100 = MAIN['small', 100]


def load(path):
    assert path.is_file(), path
    return Config.fromfile(str(path))


@pytest.mark.parametrize('key', sorted(MAIN), ids=lambda k: f'{k[0]}-{k[1]}e')
def test_main_configs_follow_the_recipe(key):
    arch, epochs = key
    cfg = load(MAIN[key])
    model = cfg.model
    assert model.type == 'DMT' and model.backbone.arch == f'vit-{arch}'
    assert model.backbone.patch_size == 16 and model.backbone.img_size == 224
    generator, head = model.target_generator, model.head
    assert generator.type == 'MultiTeacherTargetGenerator' and head.type == 'DMTDistillHead'
    assert [t.name for t in generator.teachers] == ['mae', 'mocov3', 'ibot']
    assert all(t.backbone.arch == 'base' and t.backbone.patch_size == 16
               for t in generator.teachers)
    assert set(generator.teacher_checkpoints) == {'mae', 'mocov3', 'ibot'}
    assert head.tfd is not None and head.sfd is not None
    assert head.loss == dict(type='SmoothL1DistillLoss', beta=2.0)
    assert generator.target_norm == dict(type='LNTargetNorm') and head.fusion.mode == 'fixed'

    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'
    assert optim.optimizer.type == 'AdamW' and tuple(optim.optimizer.betas) == (0.9, 0.95)
    assert optim.optimizer.weight_decay == 0.05
    assert optim.optimizer.lr == pytest.approx(1.5e-4 * 1024 / 256)
    assert cfg.auto_scale_lr.base_batch_size == 1024 == 8 * cfg.train_dataloader.batch_size
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and cosine.type == 'CosineAnnealingLR'
    assert 20 <= warmup.end <= 40 and cosine.begin == warmup.end and cosine.end == epochs
    assert cfg.train_cfg.max_epochs == epochs

    wrapper = cfg.train_dataloader.dataset  # per-sample seeded augmentation (exact resume)
    assert wrapper.type == 'PerSampleSeedDataset'
    assert cfg.train_dataloader.sampler.type == 'PerSampleSeedSampler'
    assert 'IterationSeedHook' in [h.type for h in cfg.custom_hooks]
    assert cfg.randomness.diff_rank_seed is False
    data = wrapper.dataset
    assert data.type == 'ImageNet' and data.split == 'train' and data.data_root
    crop = [t for t in data.pipeline if t.type in ('RandomResizedCrop', 'LoadRandomResizedCrop')][0]
    assert crop.scale == 224
    assert cfg.custom_imports.allow_failed_imports is False
    assert cfg.default_scope == 'mmpretrain'


@pytest.mark.parametrize('teacher', ['mae', 'mocov3', 'ibot'])
def test_single_teacher_baselines(teacher):
    cfg = load(DMT / f'dmt_vit-small-p16_{teacher}_8xb128-amp-coslr-100e_in1k.py')
    generator = cfg.model.target_generator
    assert [t.name for t in generator.teachers] == [teacher]
    assert list(generator.teacher_checkpoints) == [teacher]
    assert cfg.model.head.tfd is not None and cfg.model.head.sfd is not None
    assert cfg.train_cfg.max_epochs == 100


def test_strategy_ablations_and_dino_variant():
    tfd_only = load(DMT / 'dmt-tfd_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py')
    assert tfd_only.model.head.sfd is None and tfd_only.model.head.tfd is not None
    sfd_only = load(DMT / 'dmt-sfd_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py')
    assert sfd_only.model.head.tfd is None and sfd_only.model.head.sfd is not None
    dino = load(DMT / 'dmt_vit-small-p16_mae-mocov3-dino_8xb128-amp-coslr-100e_in1k.py')
    generator = dino.model.target_generator
    assert [t.name for t in generator.teachers] == ['mae', 'mocov3', 'dino']
    assert generator.teachers[2].checkpoint_format == 'dino'
    assert list(generator.teacher_checkpoints) == ['mae', 'mocov3', 'dino']
    # everything else is the reference 100-epoch ViT-S run
    ref = load(S100)
    for cfg in (tfd_only, sfd_only, dino):
        assert cfg.optim_wrapper == ref.optim_wrapper and cfg.model.backbone == ref.model.backbone


@pytest.mark.parametrize('arch, dims', [('tiny', 192), ('small', 384)])
def test_mae_student_baselines(arch, dims):
    cfg = load(DMT / f'mae_vit-{arch}-p16_8xb128-amp-coslr-300e_in1k.py')
    assert cfg.model.type == 'MAE' and cfg.model.backbone.arch == f'deit-{arch}'
    assert cfg.model.neck.embed_dim == dims
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1.5e-4 * 1024 / 256)
    assert cfg.train_dataloader.batch_size == 128


def test_readme_lists_every_config():
    readme = (DMT / 'README.md').read_text()
    for path in DMT.glob('*.py'):
        assert path.name in readme, f'{path.name} missing from configs/dmt/README.md'
