# COCO instance segmentation with a DMT student ViT/16: the iBOT / BEiT protocol, which the
# paper's comparison with iBOT uses. Cascade Mask R-CNN with 4conv1fc box heads, GIoU loss
# and SyncBN (mmdet's own ConvNeXt/Swin recipe, inherited unchanged: DETR-style multi-scale
# + crop training, shorter side 480-800, max 1333), on a feature pyramid built from blocks
# 4/6/8/12 (out_indices 3/5/7/11, raw block outputs) by mmseg's Feature2Pyramid (deconv x4,
# deconv x2, identity, max-pool) followed by mmdet's FPN. 1x schedule (12 epochs, steps at
# 8 and 11), 8 GPUs x 2 images, AdamW lr 1e-4 wd 0.05, layer-wise lr decay 0.75, drop path,
# AMP. The arch configs beside this folder set the width, the drop path and the student
# checkpoint (a DMT checkpoint or tools/model_converters/extract_student.py output).
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.det', 'dmt_mm.engine'],
                      allow_failed_imports=False)

embed_dims = 768
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DMTViT',
        arch='vit-base',
        # the 224-px checkpoint's position embedding is resized to this grid at load time
        # (and bicubically to each padded batch in forward)
        img_size=(800, 1344),
        patch_size=16,
        out_type='featmap',
        with_cls_token=False,  # the checkpoint's cls_token is unused
        final_norm=False,  # raw block outputs, as BEiT/iBOT; the checkpoint's ln1 is unused
        out_indices=[3, 5, 7, 11],
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=[
        dict(type='mmseg.Feature2Pyramid', embed_dim=embed_dims, rescales=[4, 2, 1, 0.5],
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[embed_dims] * 4, out_channels=256, num_outs=5),
    ])

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on biases, norms and the position embedding (as BEiT/iBOT)
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.75, flat_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                    '.cls_token': dict(decay_mult=0.0)}),
    optimizer=dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='coco/bbox_mAP'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
