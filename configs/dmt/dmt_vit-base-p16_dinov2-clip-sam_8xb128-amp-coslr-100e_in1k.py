# DMT: ViT-B/16 student; otherwise identical to the ViT-S/16 config (DINOv2 ViT-B/14 +
# OpenAI CLIP ViT-B/16 + SAM ViT-B teachers, TFD + SFD, 100 epochs on ImageNet-1K, 8 GPUs x
# 128 images, AMP).
_base_ = './dmt_vit-small-p16_dinov2-clip-sam_8xb128-amp-coslr-100e_in1k.py'

model = dict(backbone=dict(arch='vit-base'))
