# DMT: ViT-B/16 student; otherwise identical to the ViT-S/16 config (MAE + MoCo v3 +
# iBOT ViT-B/16 and DINOv2 ViT-B/14 teachers, TFD + SFD, 100 epochs on ImageNet-1K, 8 GPUs x
# 128 images, AMP).
_base_ = './dmt_vit-small-p16_mae-mocov3-ibot-dinov2_8xb128-amp-coslr-100e_in1k.py'

model = dict(backbone=dict(arch='vit-base'))
