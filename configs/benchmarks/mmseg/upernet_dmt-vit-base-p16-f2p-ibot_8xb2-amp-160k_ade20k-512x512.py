# DMT ViT-Base/16 student on ADE20K with iBOT's ViT-B UperNet recipe: 8 GPUs x 2 images,
# AdamW lr 8e-5 (iBOT's README), layer decay 0.65, UperNet width 768, normalised block outputs
# (docs/protocols/ade20k_ibot.md). Set the student checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './_base_/upernet_dmt-vit-p16-f2p-ibot_160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='vit-base',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(embed_dim=768),
    decode_head=dict(in_channels=[768] * 4, channels=768),
    auxiliary_head=dict(in_channels=768))
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(optimizer=dict(lr=8e-5), paramwise_cfg=dict(layer_decay_rate=0.65))
