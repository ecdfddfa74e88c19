# Toy teacher 1/3, masked image modelling: mmpretrain's MAE on the toy world's unlabeled
# images (CPU). Exported by tools/run_pipeline.py in the official MAE layout
# ({'model': encoder + decoder}, MAE names) and loaded by the DMT stage through
# FrozenViTTeacher(checkpoint_format='auto'), the path a downloaded MAE file takes.
_base_ = ['../mae_vit-toy-p16_1xb8-20it_toyworld.py', './_base_/toy_ssl_data.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

img_size = _base_.toy_img_size
arch = _base_.toy_teacher_arch
model = dict(
    backbone=dict(arch=arch, img_size=img_size, patch_size=16, mask_ratio=0.75),
    neck=dict(embed_dim=arch['embed_dims'], decoder_embed_dim=64, decoder_depth=2,
              decoder_num_heads=2, num_patches=(img_size // 16) ** 2))

train_pipeline = _base_.toy_one_view_pipeline
train_dataloader = dict(
    batch_size=32, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(d, pipeline=train_pipeline) for d in _base_.toy_unlabeled['datasets']]))

max_iters = _base_.toy_max_iters
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.95), weight_decay=0.05))
param_scheduler = _base_.toy_param_scheduler
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = _base_.toy_hooks
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
