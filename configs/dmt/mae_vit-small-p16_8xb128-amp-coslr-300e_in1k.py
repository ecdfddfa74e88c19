# Baseline: mmpretrain's MAE recipe with a ViT-S/16 encoder; otherwise as the ViT-T/16 one.
_base_ = './mae_vit-tiny-p16_8xb128-amp-coslr-300e_in1k.py'

model = dict(backbone=dict(arch='deit-small'), neck=dict(embed_dim=384))
