# Probe stage of the miniature study (tools/run_pipeline.py): the linear probe (the MAE
# linear recipe shrunk: frozen student, CLS token after the final norm, BatchNorm neck,
# linear head, LARS, cosine) on the toy world's single-object split, from the student file
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the random-init row)
# The study's world has 1800 training images (the base config's world 144): 5 epochs
# (285 iterations) instead of 20, one epoch of warm-up, then cosine.
_base_ = ['../vit-toy-p16_1xb32-linear-coslr-20e_toyworld-cls.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=student, prefix='backbone.')))
max_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1,
         end=max_epochs, eta_min=0.0, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
