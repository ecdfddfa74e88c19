# Toy ADE20K benchmark on CPU: the ViT-T ADE20K config (UperNet + FCN aux, Feature2Pyramid
# over 4 blocks, SyncBN with the single-process fallback, layer decay, slide inference)
# shrunk to a 4-block 64-wide student trained from scratch on the toy world's ADE-style
# label maps (0 = background, dropped by reduce_zero_label like ADE20K's "other").
_base_ = '../benchmarks/mmseg/upernet_dmt-vit-tiny-p16-f2p_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg',
                               'dmt_mm.datasets.toy_seg'], allow_failed_imports=False)

crop_size = (128, 128)
num_classes = 6
width = 64
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=2,
                            feedforward_channels=128),
                  img_size=crop_size, out_indices=[0, 1, 2, 3], drop_path_rate=0.0,
                  init_cfg=None),  # from scratch; give a checkpoint to test loading
    neck=dict(embed_dim=width),
    decode_head=dict(in_channels=[width] * 4, channels=64, num_classes=num_classes),
    auxiliary_head=dict(in_channels=width, channels=32, num_classes=num_classes),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

data_root = 'data/toy_world/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 128), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]])]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/train', seg_map_path='seg/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ToyWorldSegDataset', data_root=data_root,
                 data_prefix=dict(img_path='images/val', seg_map_path='seg/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# CPU: plain fp32 wrapper (AMP needs a GPU); a from-scratch lr instead of 1e-4.
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                    '.cls_token': dict(decay_mult=0.0)}))
max_iters = 120
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=20, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'),
               dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
