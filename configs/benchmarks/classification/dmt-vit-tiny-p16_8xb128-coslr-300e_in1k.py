# ImageNet-1K fine-tuning of a DMT ViT-Tiny/16 student: the MAE recipe of the ViT-B config
# with the small-model settings: 300 epochs (5 warm-up + cosine), layer decay 0.75.
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (see docs/classification.md)
_base_ = './dmt-vit-base-p16_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='vit-tiny',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-tiny-p16_student.pth')),
    head=dict(in_channels=192))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 5, by_epoch=True, begin=5,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs)
