# Transfer stage of the miniature study (tools/run_pipeline.py): the toy segmentation
# benchmark (UperNet + FCN auxiliary head over student blocks through Feature2Pyramid, mIoU
# with IoUMetric) initialised from the DMT student. The pipeline sets the student file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the from-scratch row)
# and shortens training to fit its time budget; the recipe is that of the base config.
_base_ = ['../upernet_vit-toy-f2p_1xb4-120it_toyworld-128x128.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg',
                               'dmt_mm.datasets.toy_seg'], allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=student, prefix='backbone.')))

max_iters = 160
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=max_iters // 10),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=max_iters // 10, end=max_iters,
         by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
