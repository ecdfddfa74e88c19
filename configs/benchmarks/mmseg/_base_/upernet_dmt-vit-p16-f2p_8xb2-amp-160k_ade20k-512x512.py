# ADE20K semantic segmentation with a DMT student ViT/16: the BEiT / MAE / iBOT protocol.
# UperNet + FCN auxiliary head; blocks 4/6/8/12 (out_indices 3/5/7/11, raw block outputs)
# -> Feature2Pyramid (deconv x4, deconv x2, identity, max-pool); 512x512 crops; 160k
# iterations at 8 GPUs x 2 images; AdamW lr 1e-4, wd 0.05, layer decay 0.65, 1.5k warm-up
# then poly; AMP; slide inference (512 window, stride 341). Everything except the student
# comes from mmseg's own MAE config. The arch configs beside this folder set the width and
# the student checkpoint (DMT checkpoint or tools/model_converters/extract_student.py output).
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg'],
                      allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.DMTViT',
        arch='vit-base',
        img_size=512,  # the 224-px checkpoint's position embedding is resized at load time
        patch_size=16,
        out_type='featmap',
        with_cls_token=True,
        final_norm=False,  # raw block outputs, as BEiT/MAE/iBOT; the checkpoint's ln1 is unused
        out_indices=[3, 5, 7, 11],
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768] * 4, channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, channels=256, num_classes=150))

# mmseg's MAE config names a ``fp16`` key that mmengine ignores; AMP is the wrapper type.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on biases, norms, position embedding and CLS token (as BEiT/MAE)
    paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0),
                                    '.cls_token': dict(decay_mult=0.0)}))

# SyncBN in the neck and heads; where it cannot synchronise (a CPU process group, one
# process) the wrapper swaps it for BN and says so (one process without a launcher:
# mmengine's Runner already does). The other arguments are mmengine's DDP defaults.
model_wrapper_cfg = dict(type='SyncBNFallbackDDP', broadcast_buffers=False,
                         find_unused_parameters=False)
auto_scale_lr = dict(enable=False, base_batch_size=16)
