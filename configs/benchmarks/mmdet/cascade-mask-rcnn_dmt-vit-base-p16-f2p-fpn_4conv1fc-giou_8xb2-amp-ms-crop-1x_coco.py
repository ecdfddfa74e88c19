# DMT ViT-Base/16 student on COCO, iBOT protocol with iBOT's ViT-B values: Cascade Mask R-CNN,
# pyramid from blocks 4/6/8/12 + FPN, multi-scale + crop training, 1x, batch 16 (8 GPUs x 2),
# layer decay 0.75, drop path 0.2 (docs/protocols/coco_ibot.md). Set the student checkpoint
# with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (a DMT checkpoint or tools/model_converters/extract_student.py output). See
# docs/detection.md.
_base_ = './_base_/cascade-mask-rcnn_dmt-vit-p16-f2p-fpn_4conv1fc-giou_8xb2-amp-ms-crop-1x_coco.py'

model = dict(
    backbone=dict(arch='vit-base', drop_path_rate=0.2, img_size=(672, 1092),
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=[
        dict(type='mmseg.Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5],
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[768] * 4, out_channels=256, num_outs=5),
    ])
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))
auto_scale_lr = dict(base_batch_size=16)
