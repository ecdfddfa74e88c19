# DMT ViT-Small/16 student on ADE20K: UperNet + FCN aux, 160k iters, batch 16 (8 GPUs x 2),
# single-scale slide test. Set the student checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (a DMT checkpoint or tools/model_converters/extract_student.py output). See
# docs/segmentation.md.
_base_ = './_base_/upernet_dmt-vit-p16-f2p_8xb2-amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='vit-small',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-small-p16_student.pth')),
    neck=dict(embed_dim=384),
    decode_head=dict(in_channels=[384] * 4, channels=512),
    auxiliary_head=dict(in_channels=384))
