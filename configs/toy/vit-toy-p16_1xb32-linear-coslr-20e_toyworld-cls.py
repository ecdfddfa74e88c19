# Toy linear probe on CPU: the ViT-T linear-probe config (MAE recipe: frozen student, CLS
# token after the final norm, BatchNorm neck, linear head, LARS, cosine) shrunk to the toy
# student on the toy world's image-folder split. Point init_cfg at a toy student checkpoint
# (e.g. extract_student.py output of a toy DMT run); without one it probes random features.
_base_ = '../benchmarks/classification/dmt-vit-tiny-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

img_size = 64
num_classes = 6
width = 64
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=2,
                            feedforward_channels=128),
                  img_size=img_size, patch_size=16, frozen_stages=4, init_cfg=None),
    neck=dict(input_features=width),
    head=dict(num_classes=num_classes, in_channels=width))

data_root = 'data/toy_world/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldImageFolder', data_root=data_root,
                 data_prefix='cls/train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldImageFolder', data_root=data_root,
                 data_prefix='cls/val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# CPU: fp32 wrapper (AMP needs a GPU); LARS lr for batch 32.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='LARS', lr=0.1, weight_decay=0.0, momentum=0.9))
max_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 2, by_epoch=True, begin=2,
         end=max_epochs, eta_min=0.0, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)
