# DMT ViT-Tiny/16 student on COCO, ViTDet protocol: Cascade Mask R-CNN, SimpleFPN from the last
# block, 14x14 windowed attention (global blocks 2/5/8/11) with relative position bias, LSJ
# 1024, 100 epochs, batch 64 (8 GPUs x 8), layer decay 0.7, fp16 AMP
# (docs/protocols/coco_vitdet.md). Set the student checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (a DMT checkpoint or tools/model_converters/extract_student.py output). See
# docs/detection.md.
# detectron2 publishes ViT-B/L/H recipes only: ViT-T uses the ViT-B values (the card says
# so).
_base_ = './_base_/cascade-mask-rcnn_dmt-vit-p16-win14-simplefpn_4conv1fc_8xb8-amp-lsj-100e_coco.py'

model = dict(
    backbone=dict(arch='vit-tiny',
                  init_cfg=dict(checkpoint='checkpoints/dmt_vit-tiny-p16_student.pth')),
    neck=dict(in_channels=192))
