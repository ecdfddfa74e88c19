# ADE20K linear semantic segmentation of a frozen DMT student ViT/16 (card:
# docs/protocols/ade20k_linear.md): iBOT's dense linear recipe, transcribed from
# bytedance/ibot evaluation/README.md ("fixed backbone and linear head": 4 GPUs x 4 images,
# out_with_norm=true, lr 8e-4 for ViT-B) and evaluation/semantic_segmentation/configs/linear/
# vit_{small,base}_512_ade20k_160k.py (every block frozen, AdamW wd 0.05, 1.5k warm-up + poly,
# 160k iterations, fp16, slide test), with DINOv2's linear head (facebookresearch/dinov2
# dinov2/eval/segmentation/models/decode_heads/linear_head.py: BatchNorm + 1x1 conv on the
# patch tokens, logits upsampled bilinearly; dmt_mm.seg.BNLinearHead). The last block's
# tokens by default (DINOv2's "linear"); the *-4blocks configs concatenate the last 4 blocks.
# The data pipeline is iBOT's ADE20K pipeline, shared with its UperNet recipe.
_base_ = '../../mmseg/_base_/upernet_dmt-vit-p16-f2p-ibot_160k_ade20k-512x512.py'
protocol = dict(name='ade20k-linear', card='docs/protocols/ade20k_linear.md',
                source='bytedance/ibot evaluation/semantic_segmentation/configs/linear/'
                       'vit_{small,base}_512_ade20k_160k.py + facebookresearch/dinov2 '
                       'dinov2/eval/segmentation/models/decode_heads/linear_head.py')

width = 768
model = dict(
    backbone=dict(
        out_indices=[11],
        frozen_stages=12,  # every block, the patch embedding and the final norm
        # mmpretrain keeps frozen blocks in train mode, where drop path is active; iBOT's
        # frozen blocks are in eval mode, where its 0.1 has no effect
        drop_path_rate=0.0),
    neck=None,
    decode_head=dict(
        _delete_=True, type='BNLinearHead', in_channels=width, channels=width, in_index=0,
        dropout_ratio=0, num_classes=150, norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)

optim_wrapper = dict(
    _delete_=True, type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=8e-4, betas=(0.9, 0.999), weight_decay=0.05))
