# ADE20K semantic segmentation with a DMT student ViT/16: iBOT's UperNet recipe, for the
# comparison with iBOT's published numbers, transcribed from bytedance/ibot
# evaluation/README.md ("Semantic Segmentation on ADE20K": per-size GPUs, images per GPU,
# out_with_norm=true, lr) and evaluation/semantic_segmentation/configs/upernet/
# vit_{small,base}_512_ade20k_160k.py (card: docs/protocols/ade20k_ibot.md). It differs from
# mmseg's MAE recipe (the configs beside this folder without "-ibot") in: block outputs
# normalised by the checkpoint's final norm (out_with_norm), no layer scales, the per-size lr,
# layer decay and UperNet width. The data pipeline, 160k schedule, 1.5k warm-up + poly decay,
# slide test and fp16 AMP are the same BEiT-lineage recipe. The arch configs set the per-size
# values and the student checkpoint.
_base_ = './upernet_dmt-vit-p16-f2p_8xb2-amp-160k_ade20k-512x512.py'
protocol = dict(name='ade20k-ibot', card='docs/protocols/ade20k_ibot.md',
                source='bytedance/ibot evaluation/README.md + evaluation/semantic_segmentation/'
                       'configs/upernet/vit_{small,base}_512_ade20k_160k.py')

model = dict(
    backbone=dict(
        final_norm=True,  # the checkpoint's final norm, applied to every output block:
        out_with_norm=True,  # iBOT's model.backbone.out_with_norm=true
        layer_scale_init_value=0.,  # iBOT's ViT has no layer scales
    ))
