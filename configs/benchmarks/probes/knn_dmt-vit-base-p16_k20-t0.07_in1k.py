# ImageNet-1K weighted k-NN (DINO's protocol: k = 20, T = 0.07) of a frozen DMT ViT-Base/16
# student; the recipe has no size-dependent value (docs/protocols/imagenet_knn.md).
#   python tools/test.py CONFIG checkpoints/dmt_vit-base-p16_student.pth
_base_ = './_base_/knn_dmt-vit-p16_k20-t0.07_in1k.py'

model = dict(backbone=dict(arch='vit-base'))
