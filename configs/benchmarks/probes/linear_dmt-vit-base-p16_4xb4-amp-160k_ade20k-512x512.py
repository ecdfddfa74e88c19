# ADE20K linear segmentation of a frozen DMT ViT-Base/16 student, last block (DINOv2's "linear"):
# iBOT's README for ViT-B: 4 GPUs x 4 images, lr 8e-4 (docs/protocols/ade20k_linear.md). Set the
# student with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './_base_/linear_dmt-vit-p16_160k_ade20k-512x512.py'

width = 768
model = dict(
    backbone=dict(arch='vit-base',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    decode_head=dict(in_channels=width, channels=width))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=8e-4))
