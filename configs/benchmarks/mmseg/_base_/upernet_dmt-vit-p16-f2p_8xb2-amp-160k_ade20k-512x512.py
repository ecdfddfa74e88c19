# ADE20K semantic segmentation with a DMT student ViT/16: mmseg's MAE / BEiT recipe,
# transcribed from open-mmlab/mmsegmentation configs/mae/
# mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py (card: docs/protocols/ade20k_mae.md, which
# lists every value beside the source's). UperNet + FCN auxiliary head; blocks 4/6/8/12
# (out_indices 3/5/7/11, raw block outputs, learnable layer scales initialised at 1.0 as
# mmseg's MAE backbone) -> Feature2Pyramid (deconv x4, deconv x2, identity, max-pool);
# 512x512 crops; 160k iterations at 8 GPUs x 2 images; AdamW lr 1e-4, wd 0.05, layer decay
# 0.65, 1.5k warm-up then poly; fp16 AMP; slide inference (512 window, stride 341).
# Everything except the student comes from mmseg's own MAE config. The arch configs beside
# this folder set the width and the student checkpoint (DMT checkpoint or
# tools/model_converters/extract_student.py output).
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg'],
                      allow_failed_imports=False)
protocol = dict(name='ade20k-mae', card='docs/protocols/ade20k_mae.md',
                source='open-mmlab/mmsegmentation '
                       'configs/mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py')

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
        final_norm=False,  # raw block outputs, as mmseg's MAE; the checkpoint's ln1 is unused
        out_indices=[3, 5, 7, 11],
        drop_path_rate=0.1,
        # mmseg's MAE backbone (init_values=1.0): learnable per-channel scales on every
        # block's attention and MLP branch, new weights a student checkpoint does not hold
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768] * 4, channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, channels=256, num_classes=150))

# mmseg's MAE config names a ``fp16`` key that mmengine ignores (it was mmseg 0.x's switch
# for fp16 with a dynamic loss scale); here fp16 AMP is the optimizer wrapper.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    # no weight decay on 1-D parameters (norms, biases, layer scales); mmseg's constructor
    # also names pos_embed and cls_token, but compares them with prefixed names, so they
    # are decayed
    paramwise_cfg=dict(layer_decay_rate=0.65, flat_decay_mult=0.0))

# SyncBN in the neck and heads; where it cannot synchronise (a CPU process group, one
# process) the wrapper swaps it for BN and says so (one process without a launcher:
# mmengine's Runner already does). The other arguments are mmengine's DDP defaults.
model_wrapper_cfg = dict(type='SyncBNFallbackDDP', broadcast_buffers=False,
                         find_unused_parameters=False)
auto_scale_lr = dict(enable=False, base_batch_size=16)
