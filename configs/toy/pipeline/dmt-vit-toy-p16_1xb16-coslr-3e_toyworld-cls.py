# Transfer stage of the miniature study (tools/run_pipeline.py): the toy classification
# benchmark (the MAE fine-tuning recipe shrunk: layer decay, drop path, RandAugment, Mixup /
# CutMix, top-1 on the toy world's image-folder split) initialised from the DMT student.
# The pipeline sets the student file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the from-scratch row)
# The study's world has 1800 single-object training images (the base config's world 144):
# 3 epochs (339 iterations) instead of 30, one warm-up epoch, then cosine.
_base_ = ['../vit-toy-p16_1xb16-coslr-30e_toyworld-cls.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=student, prefix='backbone.')))
max_epochs = 3
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
