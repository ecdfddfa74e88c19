# Toy DMT on the generated toy world, CPU, about a minute: a tiny ViT student distilled from
# three tiny teachers with TFD + SFD. The teachers here have NO checkpoint: they are RANDOM
# frozen ViTs (allow_random_teachers=True), enough to exercise every code path; the pipeline
# (tools/run_pipeline.py) plugs in tiny MAE / MoCo v3 / BYOL teachers pretrained on the toy
# world through model.target_generator.teacher_checkpoints. Teacher 'mocov3' uses patch 8 (an
# 8x8 grid) and 'ibot' sees the images resized to 48 px (3x3): both grids are resized to the
# student's 4x4.
# The student is the toy ViT of the toy detection / segmentation configs (64 wide, 4 blocks,
# patch 16), so tools/model_converters/extract_student.py output transfers to them.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

img_size = 64
student_arch = dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)
teacher_arch = dict(embed_dims=96, num_layers=2, num_heads=2, feedforward_channels=192)
model = dict(
    type='DMT',
    backbone=dict(type='DMTViT', arch=student_arch, img_size=img_size, patch_size=16),
    target_generator=dict(
        type='MultiTeacherTargetGenerator',
        teachers=[
            dict(type='FrozenViTTeacher', name='mae', checkpoint_format='mae',
                 backbone=dict(arch=teacher_arch, img_size=img_size, patch_size=16)),
            dict(type='FrozenViTTeacher', name='mocov3', checkpoint_format='mocov3',
                 backbone=dict(arch=teacher_arch, img_size=img_size, patch_size=8)),
            dict(type='FrozenViTTeacher', name='ibot', checkpoint_format='ibot', img_size=48,
                 backbone=dict(arch=teacher_arch, img_size=48, patch_size=16)),
        ],
        teacher_checkpoints=dict(mae=None, mocov3=None, ibot=None),
        allow_random_teachers=True,
        target_norm=dict(type='LNTargetNorm')),
    head=dict(
        type='DMTDistillHead',
        tfd=dict(loss_weight=1.0, cls_weight=0.5),
        sfd=dict(loss_weight=1.0, teacher_layers=[-1]),
        loss=dict(type='SmoothL1DistillLoss', beta=2.0),
        fusion='fixed'),
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))

data_root = 'data/toy_world/'
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ToyWorldImageFolder', data_root=data_root, data_prefix='images/train',
        with_label=False,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0),
                       backend='pillow', interpolation='bicubic'),
                  dict(type='RandomFlip', prob=0.5),
                  dict(type='PackInputs')]))

max_iters = 40
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5),
    dict(type='CosineAnnealingLR', T_max=max_iters - 5, by_epoch=False, begin=5, end=max_iters)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', interval=max_iters, by_epoch=False))
log_processor = dict(by_epoch=False, window_size=1)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
