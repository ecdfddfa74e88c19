# COCO instance segmentation with a DMT student ViT/16: the iBOT protocol, which the paper's
# comparison with iBOT uses, transcribed from bytedance/ibot evaluation/README.md and
# evaluation/object_detection/configs/cascade_rcnn/vit_{small,base}_giou_4conv1f_coco_3x.py
# (card: docs/protocols/coco_ibot.md, which lists every value beside the source's).
# Cascade Mask R-CNN with 4conv1fc SyncBN box heads and GIoU loss (mmdet's own ConvNeXt
# recipe, inherited: DETR-style multi-scale + crop training, shorter side 480-800, max 1333)
# on a feature pyramid built from blocks 4/6/8/12 (out_indices 3/5/7/11, raw block outputs,
# the CLS token kept in the sequence as iBOT's backbone does) by mmseg's Feature2Pyramid
# (deconv x4, deconv x2, identity, max-pool) followed by mmdet's FPN. 1x schedule (12 epochs,
# steps at 8 and 11, 500-iteration warm-up), 8 GPUs, AdamW lr 1e-4 wd 0.05, fp16 AMP. The
# per-size values (images per GPU, layer decay, drop path, position-table canvas) are set by
# the arch configs beside this folder, with the student checkpoint.
_base_ = ('mmdet::convnext/'
          'cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py')
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.det', 'dmt_mm.engine'],
                      allow_failed_imports=False)
protocol = dict(name='coco-ibot', card='docs/protocols/coco_ibot.md',
                source='bytedance/ibot evaluation/README.md + evaluation/object_detection/'
                       'configs/cascade_rcnn/vit_{small,base}_giou_4conv1f_coco_3x.py')

embed_dims = 768
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DMTViT',
        arch='vit-base',
        # the checkpoint's position table is resized to this canvas's grid at load time and
        # bicubically to each padded batch in forward (iBOT: img_size of its configs)
        img_size=(672, 1092),
        patch_size=16,
        out_type='featmap',
        with_cls_token=True,  # iBOT's backbone runs the CLS token through every block
        final_norm=False,  # raw block outputs (iBOT: out_with_norm=False)
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
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='float16',  # iBOT trains with apex fp16 (optimizer_config use_fp16=True)
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on 1-D parameters (norms, biases); iBOT's constructor also names
    # pos_embed and cls_token, but compares them with prefixed names, so they are decayed
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.75, flat_decay_mult=0.0),
    optimizer=dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_best='coco/bbox_mAP'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
