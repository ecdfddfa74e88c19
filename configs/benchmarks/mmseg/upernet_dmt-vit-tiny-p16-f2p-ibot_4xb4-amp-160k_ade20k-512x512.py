# DMT ViT-Tiny/16 student on ADE20K with iBOT's ViT-S UperNet recipe: 4 GPUs x 4 images,
# AdamW lr 3e-5 (iBOT's README), layer decay 0.9, UperNet width 384, normalised block outputs
# (docs/protocols/ade20k_ibot.md). Set the student checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# iBOT publishes no ViT-T recipe: ViT-T uses iBOT's ViT-S values (the card says so).
_base_ = './_base_/upernet_dmt-vit-p16-f2p-ibot_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='vit-tiny',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-tiny-p16_student.pth')),
    neck=dict(embed_dim=192),
    decode_head=dict(in_channels=[192] * 4, channels=384),
    auxiliary_head=dict(in_channels=192))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=3e-5), paramwise_cfg=dict(layer_decay_rate=0.9))
