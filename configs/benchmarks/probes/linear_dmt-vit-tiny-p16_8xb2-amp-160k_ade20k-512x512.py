# ADE20K linear segmentation of a frozen DMT ViT-Tiny/16 student, last block (DINOv2's "linear"):
# iBOT's vit_small linear config: 8 GPUs x 2 images, lr 3e-5; iBOT has no ViT-T recipe, so ViT-S
# values (docs/protocols/ade20k_linear.md). Set the student with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './_base_/linear_dmt-vit-p16_160k_ade20k-512x512.py'

width = 192
model = dict(
    backbone=dict(arch='vit-tiny',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-tiny-p16_student.pth')),
    decode_head=dict(in_channels=width, channels=width))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=3e-5))
