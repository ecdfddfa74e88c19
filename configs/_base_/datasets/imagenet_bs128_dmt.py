# ImageNet-1K train split, no labels used: one RandomResizedCrop-224 + flip view per image
# (mmpretrain's MAE pipeline), 128 images per GPU. Set `data_root` to your ImageNet folder
# (train/ with class sub-folders, optional meta/train.txt), e.g.
#   --cfg-options train_dataloader.dataset.dataset.data_root=/data/imagenet/
# The PerSampleSeed* wrappers seed each sample's augmentation from (seed, epoch, index), so a
# resumed or re-sharded run sees exactly the same crops (see configs/_base_/dmt_runtime.py).
#
# LoadRandomResizedCrop (dmt_mm/datasets/fast_decode.py) is mmpretrain's LoadImageFromFile +
# RandomResizedCrop(224, crop 0.2-1.0, bicubic, pillow) in one step: the same crop boxes
# (mmpretrain's own sampler), the crop resized straight from the decoded JPEG, decoded at
# 1/2-1/8 size when the crop allows it; unreadable files are skipped as LoadImageOrSkip
# does. Images/s per worker before and after: BENCHMARKS.md. GPU (nvJPEG) decoding:
# configs/dmt/*-gpudecode-* and docs/performance.md.
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs512_mae.py'

data_root = 'data/imagenet/'
train_pipeline = [
    dict(type='LoadRandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')]
# collate_fn restated: inherited through 'mmpretrain::' it carries a `_scope_` key, which
# mmengine's Runner.build_dataloader passes on to the collate function (a TypeError at the
# first batch)
train_dataloader = dict(
    batch_size=128, num_workers=10, collate_fn=dict(_delete_=True, type='default_collate'),
    sampler=dict(_delete_=True, type='PerSampleSeedSampler',
                 sampler=dict(type='DefaultSampler', shuffle=True)),
    dataset=dict(_delete_=True, type='PerSampleSeedDataset',
                 dataset=dict(type='ImageNet', data_root=data_root, split='train',
                              pipeline=train_pipeline)))
