# The controlled experiment of the miniature study (tools/run_pipeline.py --controlled):
# a toy teacher (the 96-wide "ViT-B" of the toy world) trained with a *known* objective:
# per-patch classification of one factor map of the version-2 toy world through a linear
# head (BatchNorm + 1x1 conv, the dense linear probe's head, here with the ViT trainable),
# on 64x64 crops of the scenes (the size at which DMT shows images to its teachers). The
# factor configs beside this one choose the map; the study exports the trained ViT as an
# mmpretrain-layout teacher file. Crops are not rescaled: object size is a factor.
_base_ = ['../linear_dmt-vit-toy-p16_1xb8-200it_toyworld-128x128.py',
          '../_base_/toy_ssl_data.py']

crop_size = (64, 64)
width = _base_.toy_teacher_arch['embed_dims']
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, **_base_.toy_teacher_arch), img_size=crop_size,
                  out_indices=[3], frozen_stages=-1, init_cfg=None),  # trained from scratch
    decode_head=dict(in_channels=width, channels=width),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(32, 32)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=1e-3))
max_iters = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
