# Ablation: spatial feature fusion distillation only (no TFD heads); otherwise identical to
# dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py.
_base_ = './dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'

model = dict(head=dict(tfd=None))
