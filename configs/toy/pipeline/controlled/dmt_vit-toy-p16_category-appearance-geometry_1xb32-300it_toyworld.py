# The controlled experiment of the miniature study (tools/run_pipeline.py --controlled): DMT
# (TFD + SFD) of the toy student from three teachers that know different, known things --
# each trained to classify one factor map per patch (linear-teacher_*-{category,appearance,
# geometry}.py): the object category, its colour x texture, its size x depth order. All
# three are toy "ViT-B"s (96 wide, patch 16) in mmpretrain layout. Student, losses, data and
# schedule are those of the main study's DMT config. Set the files with
#   --cfg-options model.target_generator.teacher_checkpoints.category=PATH ...
_base_ = ['../dmt_vit-toy-p16_mae-mocov3-byol_1xb32-300it_toyworld.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

toy_teacher = dict(arch=_base_.toy_teacher_arch, img_size=_base_.img_size, patch_size=16)
root = 'work_dirs/pipeline_controlled/'
model = dict(target_generator=dict(
    teachers=[dict(type='FrozenViTTeacher', name=name, checkpoint_format='mmpretrain',
                   backbone=toy_teacher)
              for name in ('category', 'appearance', 'geometry')],
    teacher_checkpoints=dict(
        _delete_=True,
        category=root + 'teacher_category/category_teacher_vit-toy-p16.pth',
        appearance=root + 'teacher_appearance/appearance_teacher_vit-toy-p16.pth',
        geometry=root + 'teacher_geometry/geometry_teacher_vit-toy-p16.pth')))
