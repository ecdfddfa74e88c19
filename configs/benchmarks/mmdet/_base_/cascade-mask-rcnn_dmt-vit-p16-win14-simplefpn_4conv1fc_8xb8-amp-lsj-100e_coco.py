# COCO instance segmentation with a DMT student ViT/16: the ViTDet protocol, transcribed from
# facebookresearch/detectron2 projects/ViTDet/configs/COCO/cascade_mask_rcnn_vitdet_b_100ep.py
# (card: docs/protocols/coco_vitdet.md, which lists every value beside the source's).
# Cascade Mask R-CNN (mmdet's) with LayerNorm 4conv1fc box heads (L1 box loss), 4-conv LN
# mask head and a 2-conv RPN head, on SimpleFPN (conv + LN, no activation) from the last
# block. The student runs 14x14 windowed attention in all blocks but 2, 5, 8, 11 (global),
# with decomposed relative position bias in every block (new zero-initialised weights: a
# student checkpoint loads without them); its 224-px position table is interpolated to the
# token grid in every forward. Large-scale jitter on a 1024 canvas, train and test images
# padded to 1024x1024; 100 COCO epochs at batch 64 (8 GPUs x 8), AdamW lr 1e-4 wd 0.1, layer
# decay 0.7, drop path 0.1, fp16 AMP. The arch configs beside this folder set the width and
# the student checkpoint (a DMT checkpoint or tools/model_converters/extract_student.py
# output).
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.det', 'dmt_mm.engine'],
                      allow_failed_imports=False)
protocol = dict(name='coco-vitdet', card='docs/protocols/coco_vitdet.md',
                source='facebookresearch/detectron2 '
                       'projects/ViTDet/configs/COCO/cascade_mask_rcnn_vitdet_b_100ep.py')

image_size = (1024, 1024)
# detectron2's get_norm('LN') (and mmdet's ViTDet LN2d): channels-first LayerNorm, eps 1e-6
norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6, requires_grad=True)
stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
model = dict(
    # every image (<= 1024 a side after the resize) is zero-padded after normalisation to
    # the 1024x1024 canvas, in training and in testing (detectron2's square_pad=1024)
    data_preprocessor=dict(pad_size_divisor=image_size[0], pad_mask=True,
                           batch_augments=None),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DMTViT',
        arch='vit-base',
        img_size=224,  # the pretraining position table, interpolated to the grid in forward
        patch_size=16,
        out_type='featmap',
        with_cls_token=False,  # ViTDet has no CLS token; the checkpoint's one is unused
        final_norm=False,  # the last block's raw output, as ViTDet
        out_indices=[11],
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indices=[2, 5, 8, 11],
        use_rel_pos=True,
        rel_pos_img_size=image_size,  # global blocks' tables: 2 x 64 - 1 entries per axis
        with_cp=False,  # True trades compute for memory (activation checkpointing)
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(_delete_=True, type='SimpleFPN', in_channels=768, out_channels=256, num_outs=5,
              norm_cfg=norm_cfg, act_cfg=None),
    rpn_head=dict(num_convs=2, loss_bbox=dict(_delete_=True, type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        bbox_head=[
            dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256,
                 fc_out_channels=1024, roi_feat_size=7, num_classes=80, norm_cfg=norm_cfg,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                 target_stds=s),
                 reg_class_agnostic=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 # detectron2's FastRCNNOutputLayers: smooth_l1_beta=0, i.e. L1
                 loss_bbox=dict(type='L1Loss', loss_weight=1.0))
            for s in stds],
        mask_head=dict(norm_cfg=norm_cfg)),
    train_cfg=dict(rpn=dict(allowed_border=-1),
                   rpn_proposal=dict(nms_pre=2000, max_per_img=1000)))

# LSJ training pipeline from the base (scale 0.1-2.0, 1024 crops); test: long side 1024
# (detectron2's ResizeShortestEdge(1024, max_size=1024)), padded to the canvas above
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# 8 loader processes per GPU feed 8 LSJ images of 1024 px per step (tools/slurm_*.sh give
# each task workers + 1 CPUs)
train_dataloader = dict(batch_size=8, num_workers=8)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='float16',  # detectron2's AMPTrainer: float16 autocast + GradScaler
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on the position table and the ViT blocks' LayerNorms only (detectron2:
    # weight_decay_norm=0 applies to torch LayerNorms; the LN of the neck and heads and
    # every bias and relative-position table are decayed)
    paramwise_cfg=dict(layer_decay_rate=0.7,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                    '.ln1.': dict(decay_mult=0.0),
                                    '.ln2.': dict(decay_mult=0.0)}))
# 25 epochs over the 4x-repeated train set = 100 COCO epochs (detectron2: 184,375 iterations
# at batch 64); steps at 88 and 96 COCO epochs, 250-iteration linear warm-up from 0.001
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='coco/bbox_mAP'))
auto_scale_lr = dict(enable=False, base_batch_size=64)
