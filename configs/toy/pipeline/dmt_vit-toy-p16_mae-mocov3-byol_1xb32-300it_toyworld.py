# The miniature DMT of tools/run_pipeline.py: the toy student (64 wide, 4 blocks, patch 16:
# the backbone of every toy transfer config) distilled with TFD + SFD from the three toy
# teachers the pipeline pretrains on the toy world -- MAE (masked image modelling), MoCo v3
# (contrastive) and BYOL (EMA self-distillation, standing in for iBOT / DINO: mmpretrain has
# neither) -- each saved in its official layout and loaded with checkpoint_format='auto',
# the path a downloaded teacher file takes. Set the files with
#   --cfg-options model.target_generator.teacher_checkpoints.mae=PATH ...
# (defaults: where `python tools/run_pipeline.py` writes them).
_base_ = ['../dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py', './_base_/toy_ssl_data.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

img_size = _base_.toy_img_size
toy_teacher = dict(arch=_base_.toy_teacher_arch, img_size=img_size)
pipeline_root = 'work_dirs/pipeline/'
model = dict(target_generator=dict(
    teachers=[
        dict(type='FrozenViTTeacher', name='mae', checkpoint_format='auto',
             backbone=dict(toy_teacher, patch_size=16)),
        dict(type='FrozenViTTeacher', name='mocov3', checkpoint_format='auto', img_size=48,
             backbone=dict(toy_teacher, img_size=48, patch_size=8)),  # 6x6 grid -> 4x4
        dict(type='FrozenViTTeacher', name='byol', checkpoint_format='auto',
             backbone=dict(toy_teacher, patch_size=16)),
    ],
    teacher_checkpoints=dict(
        _delete_=True,
        mae=pipeline_root + 'teacher_mae/mae_pretrain_vit_toy.pth',
        mocov3=pipeline_root + 'teacher_mocov3/mocov3_vit-toy-p8.pth.tar',
        byol=pipeline_root + 'teacher_byol/byol_vittoy16_pretrain_full_checkpoint.pth'),
    allow_random_teachers=False))

train_pipeline = _base_.toy_one_view_pipeline
train_dataloader = dict(
    batch_size=32,
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(d, pipeline=train_pipeline) for d in _base_.toy_unlabeled['datasets']]))

max_iters = _base_.toy_max_iters
optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
param_scheduler = _base_.toy_param_scheduler
train_cfg = dict(max_iters=max_iters)
default_hooks = _base_.toy_hooks
log_processor = dict(window_size=10)
