# DMT with the paper's teachers (MAE + MoCo v3 + iBOT ViT-B/16) plus DINOv2 ViT-B/14 (patch
# 14 at 224 px: a 16x16 grid resized to the student's 14x14), distilled into a
# ViT-Small/16; otherwise identical to the paper-trio config. Teacher paths:
# model.target_generator.teacher_checkpoints.{mae,mocov3,ibot,dinov2}.
_base_ = [
    './dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py',
    '../_base_/models/dmt_teachers_dinov2-clip-sam.py',
]

model = dict(target_generator=dict(
    teachers=[{{_base_.mae_teacher}}, {{_base_.mocov3_teacher}}, {{_base_.ibot_teacher}},
              {{_base_.dinov2_teacher}}],
    teacher_checkpoints=dict(dinov2={{_base_.foundation_ckpts.dinov2}})))
