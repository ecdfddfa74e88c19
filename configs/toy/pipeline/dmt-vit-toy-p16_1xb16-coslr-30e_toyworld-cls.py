# Transfer stage of the miniature study (tools/run_pipeline.py): the toy classification
# benchmark (the MAE fine-tuning recipe shrunk: layer decay, drop path, RandAugment, Mixup /
# CutMix, top-1 on the toy world's image-folder split) initialised from the DMT student.
# The pipeline sets the student file with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (None: the from-scratch row)
# The recipe and its length are those of the base config.
_base_ = ['../vit-toy-p16_1xb16-coslr-30e_toyworld-cls.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

student = 'work_dirs/pipeline/extract_dmt/student_vit-toy-p16.pth'
model = dict(backbone=dict(
    init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=student, prefix='backbone.')))
default_hooks = dict(logger=dict(interval=9))  # once per epoch (144 images / 16)
