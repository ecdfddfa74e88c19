# Probe stage of the miniature study (tools/run_pipeline.py): the dense linear probe (frozen
# student, BatchNorm + 1x1 conv on the last block's patch tokens, bilinear upsampling,
# IoUMetric) on the toy world's label maps, from the student file
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the random-init row)
# and, in a version-2 world, of any factor: --cfg-options train_dataloader.dataset.factor=
# colour val_dataloader.dataset.factor=colour model.decode_head.num_classes=6.
_base_ = ['../linear_vit-toy-p16_1xb8-200it_toyworld-128x128.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.seg',
                               'dmt_mm.datasets.toy_seg'], allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=student, prefix='backbone.')))
