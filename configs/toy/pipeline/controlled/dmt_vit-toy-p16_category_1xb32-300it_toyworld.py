# Controlled experiment: DMT with one teacher (K = 1), the "category" teacher, with everything
# else as in the three-teacher config.
_base_ = ['./dmt_vit-toy-p16_category-appearance-geometry_1xb32-300it_toyworld.py']
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls'],
                      allow_failed_imports=False)

model = dict(target_generator=dict(
    teachers=[_base_.model.target_generator.teachers[0]],
    teacher_checkpoints=dict(
        _delete_=True, category=_base_.model.target_generator.teacher_checkpoints['category'])))
