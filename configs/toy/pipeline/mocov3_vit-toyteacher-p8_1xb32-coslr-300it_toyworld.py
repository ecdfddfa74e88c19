# Toy teacher 2/3, contrastive: mmpretrain's MoCo v3 on the toy world's unlabeled images
# (CPU), a ViT with patch 8 on 48 px crops: in DMT it sees the 64 px inputs resized to 48 px
# and its 6x6 token grid is resized to the student's 4x4 (as for real teachers of another
# patch size or resolution, e.g. MAE ViT-H/14). Exported by tools/run_pipeline.py in the
# official MoCo v3 layout ({'state_dict': module.base_encoder.* / module.momentum_encoder.* /
# module.predictor.*}).
_base_ = ['mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py',
          './_base_/toy_ssl_data.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

data_root = _base_.toy_data_root  # the upstream base's own points at ImageNet
img_size = 48
arch = _base_.toy_teacher_arch
proj_dims, hid_dims = 64, 256
norm_cfg = dict(type='BN1d')  # one CPU process: plain BN instead of the bases' SyncBN
model = dict(
    base_momentum=0.02,
    backbone=dict(arch=dict(_delete_=True, **arch), img_size=img_size, patch_size=8),
    neck=dict(in_channels=arch['embed_dims'], hid_channels=hid_dims, out_channels=proj_dims,
              norm_cfg=norm_cfg),
    head=dict(predictor=dict(in_channels=proj_dims, hid_channels=hid_dims,
                             out_channels=proj_dims, norm_cfg=norm_cfg)))

# MoCo v3's two asymmetric views, at toy scale (no blur on 48 px crops)
# hue jitter stays 0: mmcv 2.1's adjust_hue overflows uint8 on negative hue with numpy 2
view = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0),
         backend='pillow'),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.0)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1],
         transforms=[view, view + [dict(type='Solarize', thr=128, prob=0.2)]]),
    dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    # a base dict from another package carries _scope_, which default_collate would receive
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(d, pipeline=train_pipeline) for d in _base_.toy_unlabeled['datasets']]))

max_iters = _base_.toy_max_iters
optim_wrapper = dict(_delete_=True, type='OptimWrapper',  # fp32 on CPU
                     optimizer=dict(type='AdamW', lr=1.5e-3, weight_decay=0.1))
param_scheduler = _base_.toy_param_scheduler
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = _base_.toy_hooks
log_processor = dict(by_epoch=False)
find_unused_parameters = False
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
