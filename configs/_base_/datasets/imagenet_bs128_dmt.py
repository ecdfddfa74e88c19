# ImageNet-1K train split, no labels used: one RandomResizedCrop-224 + flip view per image
# (mmpretrain's MAE pipeline), 128 images per GPU. Set `data_root` to your ImageNet folder
# (train/ with class sub-folders, optional meta/train.txt), e.g.
#   --cfg-options train_dataloader.dataset.data_root=/data/imagenet/
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs512_mae.py'

data_root = 'data/imagenet/'
train_dataloader = dict(batch_size=128, num_workers=10, dataset=dict(data_root=data_root))
