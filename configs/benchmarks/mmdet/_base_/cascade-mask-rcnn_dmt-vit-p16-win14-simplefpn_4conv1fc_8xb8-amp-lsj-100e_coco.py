# COCO instance segmentation with a DMT student ViT/16: the ViTDet protocol (Li et al.,
# 2022). Cascade Mask R-CNN (mmdet's base) with LayerNorm 4conv1fc box heads, 4-conv mask
# head and a 2-conv RPN head, on SimpleFPN from the last block. The student runs windowed
# attention (14x14 windows) in all blocks but 2, 5, 8, 11, which stay global; windowing
# adds no weights, so any plain ViT checkpoint loads. Large-scale jitter 1024 (mmdet's
# lsj-100e recipe: scale 0.1-2.0, 1024 crops, 100 epochs), 8 GPUs x 8 images, AdamW lr 1e-4
# wd 0.1, layer-wise lr decay 0.7, drop path 0.1, 250-iter warm-up, steps at 88% / 96%, AMP.
# The arch configs beside this folder set the width and the student checkpoint (a DMT
# checkpoint or tools/model_converters/extract_student.py output).
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.det', 'dmt_mm.engine'],
                      allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='mmpretrain.LN2d', requires_grad=True)
stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DMTViT',
        arch='vit-base',
        img_size=image_size,  # the 224-px position embedding is resized at load time
        patch_size=16,
        out_type='featmap',
        with_cls_token=False,  # ViTDet has no CLS token; the checkpoint's one is unused
        final_norm=False,  # the last block's raw output, as ViTDet
        out_indices=[11],
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indices=[2, 5, 8, 11],
        with_cp=False,  # True trades compute for memory (activation checkpointing)
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(_delete_=True, type='SimpleFPN', in_channels=768, out_channels=256, num_outs=5,
              norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=[
            dict(type='Shared4Conv1FCBBoxHead', in_channels=256, conv_out_channels=256,
                 fc_out_channels=1024, roi_feat_size=7, num_classes=80, norm_cfg=norm_cfg,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                 target_stds=s),
                 reg_class_agnostic=True,
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for s in stds],
        mask_head=dict(norm_cfg=norm_cfg)),
    train_cfg=dict(rpn=dict(allowed_border=-1)))

# LSJ training pipeline from the base; test at the same 1024 scale
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=8, num_workers=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on norms and the position embedding (as ViTDet)
    paramwise_cfg=dict(layer_decay_rate=0.7, norm_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
# 25 epochs over the 4x-repeated train set = 100 COCO epochs (184k iterations at batch 64)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='coco/bbox_mAP'))
auto_scale_lr = dict(enable=False, base_batch_size=64)
