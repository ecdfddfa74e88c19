# Toy UperNet + FCN auxiliary head with the DMT student ViT on the toy world's ADE-style
# label maps (CPU). Same structure as configs/benchmarks/mmseg (mmseg's ViT-UperNet base), shrunk.
_base_ = ['mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
          'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_seg'],
                      allow_failed_imports=False)

crop_size = (128, 128)
num_classes = 6
width = 64
norm_cfg = dict(type='BN', requires_grad=True)  # single-process toy run: no SyncBN
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True, type='mmpretrain.DMTViT',
        arch=dict(embed_dims=width, num_layers=4, num_heads=2, feedforward_channels=128),
        img_size=crop_size, patch_size=16, out_type='featmap', with_cls_token=True,
        final_norm=False, out_indices=[0, 1, 2, 3]),
    neck=dict(in_channels=[width] * 4, out_channels=width, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[width] * 4, channels=64, num_classes=num_classes,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=width, channels=32, num_classes=num_classes,
                        norm_cfg=norm_cfg))

data_root = 'data/toy_world/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/train', seg_map_path='seg/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/val', seg_map_path='seg/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
max_iters = 40
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=max_iters,
                        by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
