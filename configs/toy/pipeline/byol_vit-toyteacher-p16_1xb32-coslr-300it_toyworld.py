# Toy teacher 3/3, the "hybrid" self-distillation slot that iBOT / DINO fill in the paper.
# mmpretrain 1.2 ships neither DINO nor iBOT; its closest self-distillation algorithm is
# BYOL: an EMA (momentum) teacher network and an online student that predicts it across
# two views, no negatives -- DINO's recipe without the centred/sharpened prototype softmax
# (and without iBOT's masked-patch term). A plain mmpretrain ViT backbone (CLS token).
# tools/run_pipeline.py exports the EMA network as the teacher of a DINO training
# checkpoint ({'teacher': backbone.* + head.*, 'student': module.backbone.* ...}).
_base_ = ['mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py',
          './_base_/toy_ssl_data.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

data_root = _base_.toy_data_root  # the upstream base's own points at ImageNet
img_size = _base_.toy_img_size
arch = _base_.toy_teacher_arch
proj_dims, hid_dims = 64, 256
norm_cfg = dict(type='BN1d')  # one CPU process: plain BN instead of the bases' SyncBN
model = dict(
    base_momentum=0.02,
    backbone=dict(_delete_=True, type='VisionTransformer', arch=arch, img_size=img_size,
                  patch_size=16, out_type='cls_token'),
    neck=dict(in_channels=arch['embed_dims'], hid_channels=hid_dims, out_channels=proj_dims,
              with_avg_pool=False, norm_cfg=norm_cfg),
    head=dict(predictor=dict(in_channels=proj_dims, hid_channels=hid_dims,
                             out_channels=proj_dims, norm_cfg=norm_cfg)))

# hue jitter stays 0: mmcv 2.1's adjust_hue overflows uint8 on negative hue with numpy 2
view = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0),
         interpolation='bicubic', backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.0)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989))]
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
optim_wrapper = dict(_delete_=True, type='OptimWrapper',  # AdamW for a ViT (not LARS)
                     optimizer=dict(type='AdamW', lr=1.5e-3, weight_decay=0.05))
param_scheduler = _base_.toy_param_scheduler
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = _base_.toy_hooks
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
