# Transfer stage of the miniature study (tools/run_pipeline.py): the toy detection benchmark
# (Cascade Mask R-CNN + SimpleFPN, ViTDet-style windowed student, COCO AP with CocoMetric)
# initialised from the DMT student. The pipeline sets the student file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the from-scratch row)
# and shortens training to fit its time budget; the recipe is that of the base config.
_base_ = ['../cascade-mask-rcnn_vit-toy-simplefpn_1xb4-300it_toyworld.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.det', 'dmt_mm.datasets.toy_det'],
                      allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(type='Pretrained', checkpoint=student, prefix='backbone.')))

max_iters = 160
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=max_iters // 10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.8)], gamma=0.1)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
