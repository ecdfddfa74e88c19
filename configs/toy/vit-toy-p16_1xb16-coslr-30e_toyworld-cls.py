# Toy ImageNet fine-tuning on CPU: the ViT-T fine-tuning config (MAE recipe: layer decay,
# drop path, RandAugment, random erasing, Mixup/CutMix, label smoothing, cosine schedule)
# shrunk to a 4-block 64-wide student trained from scratch on the toy world's image-folder
# split (cls/{train,val}/<shape>/, 6 classes, 64 px).
_base_ = '../benchmarks/classification/dmt-vit-tiny-p16_8xb128-coslr-300e_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

img_size = 64
num_classes = 6
width = 64
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=2,
                            feedforward_channels=128),
                  img_size=img_size, patch_size=16, drop_path_rate=0.1,
                  init_cfg=None),  # from scratch; give a checkpoint to test loading
    head=dict(num_classes=num_classes, in_channels=width))

data_root = 'data/toy_world/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldImageFolder', data_root=data_root,
                 data_prefix='cls/train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldImageFolder', data_root=data_root,
                 data_prefix='cls/val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3))  # batch 16 from scratch
max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 3, by_epoch=True, begin=3,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)
