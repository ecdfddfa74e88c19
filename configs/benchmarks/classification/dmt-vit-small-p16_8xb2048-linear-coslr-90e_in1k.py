# ImageNet-1K linear probe of a DMT ViT-Small/16 student: the MAE linear recipe of the ViT-B
# config (all 12 blocks frozen, BatchNorm neck + linear head on the CLS token).
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (see docs/classification.md)
_base_ = './dmt-vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'

model = dict(
    backbone=dict(arch='vit-small',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-small-p16_student.pth')),
    neck=dict(input_features=384),
    head=dict(in_channels=384))
