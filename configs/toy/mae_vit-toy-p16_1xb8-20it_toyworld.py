# Toy self-supervised pretraining (mmpretrain's MAE) on the generated toy world, CPU, seconds.
# Proves the mmpretrain side of the stack; the DMT toy config lives beside it.
_base_ = ['mmpretrain::_base_/models/mae_vit-base-p16.py',
          'mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

toy_arch = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)
model = dict(
    backbone=dict(_delete_=True, type='MAEViT', arch=toy_arch, img_size=64, patch_size=16,
                  mask_ratio=0.75),
    neck=dict(embed_dim=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
              num_patches=16),
    head=dict(patch_size=16))

data_root = 'data/toy_world/'
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    # InfiniteSampler: with DefaultSampler mmengine's iteration loop sleeps 2 s per epoch
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ToyWorldImageFolder', data_root=data_root, data_prefix='images/train',
        with_label=False,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0),
                       backend='pillow', interpolation='bicubic'),
                  dict(type='RandomFlip', prob=0.5),
                  dict(type='PackInputs')]))
data_preprocessor = dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=20, by_epoch=False, begin=0, end=20)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20)
default_hooks = dict(logger=dict(type='LoggerHook', interval=5),
                     checkpoint=dict(type='CheckpointHook', interval=10, by_epoch=False))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
