# Toy dense linear probe on CPU: the ADE20K linear protocol (frozen student, BatchNorm +
# 1x1 conv on the last block's patch tokens, bilinear upsampling, IoUMetric) on the toy
# student and the toy world's ADE-style label maps, 128x128 crops. Point init_cfg at a toy
# student checkpoint (extract_student.py output); without one it probes random features.
# CPU: fp32 (AMP needs a GPU), and a schedule that converges in 200 iterations: lr 1e-2
# with 20 warm-up iterations then poly, instead of 160k iterations at lr 8e-4. Training
# sees the whole 128-px scenes, flipped, without rescaling: object size is a factor of the
# toy world that a probe may be asked about.
_base_ = '../benchmarks/probes/linear_dmt-vit-tiny-p16_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg',
                               'dmt_mm.datasets.toy_seg'], allow_failed_imports=False)

crop_size = (128, 128)
width = 64
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=2,
                            feedforward_channels=128),
                  img_size=crop_size, out_indices=[3], frozen_stages=4, init_cfg=None),
    decode_head=dict(in_channels=width, channels=width, num_classes=6),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

data_root = 'data/toy_world/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/train', seg_map_path='seg/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/val', seg_map_path='seg/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-2, betas=(0.9, 0.999),
                                    weight_decay=0.05))
max_iters = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'),
               dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
