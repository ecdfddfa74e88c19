# Baseline of the miniature study: spatial feature fusion distillation only (no TFD), three
# teachers.
_base_ = ['./dmt_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

model = dict(head=dict(tfd=None))
