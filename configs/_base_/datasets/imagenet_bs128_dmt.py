# ImageNet-1K train split, no labels used: one RandomResizedCrop-224 + flip view per image
# (mmpretrain's MAE pipeline), 128 images per GPU. Set `data_root` to your ImageNet folder
# (train/ with class sub-folders, optional meta/train.txt), e.g.
#   --cfg-options train_dataloader.dataset.dataset.data_root=/data/imagenet/
# The PerSampleSeed* wrappers seed each sample's augmentation from (seed, epoch, index), so a
# resumed or re-sharded run sees exactly the same crops (see configs/_base_/dmt_runtime.py).
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs512_mae.py'

data_root = 'data/imagenet/'
train_dataloader = dict(
    batch_size=128, num_workers=10,
    sampler=dict(_delete_=True, type='PerSampleSeedSampler',
                 sampler=dict(type='DefaultSampler', shuffle=True)),
    dataset=dict(_delete_=True, type='PerSampleSeedDataset',
                 dataset=dict(type='ImageNet', data_root=data_root, split='train',
                              pipeline={{_base_.train_pipeline}})))
