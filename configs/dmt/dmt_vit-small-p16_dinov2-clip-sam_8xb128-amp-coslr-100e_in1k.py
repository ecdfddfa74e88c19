# DMT with a RADIO-style teacher trio: DINOv2 ViT-B/14 + OpenAI CLIP ViT-B/16 + SAM ViT-B
# (docs/teachers.md), each at its own resolution (224 / 224 / 1024 px) and width (768 / 768
# / 256), distilled into a ViT-Small/16 with TFD + SFD; recipe as the paper-trio config
# (100 epochs on ImageNet-1K, 8 GPUs x 128 images, AMP). Teacher paths:
# model.target_generator.teacher_checkpoints.{dinov2,clip,sam}.
_base_ = [
    './dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py',
    '../_base_/models/dmt_teachers_dinov2-clip-sam.py',
]

model = dict(target_generator=dict(
    teachers=[{{_base_.dinov2_teacher}}, {{_base_.clip_teacher}}, {{_base_.sam_teacher}}],
    teacher_checkpoints=dict(_delete_=True, dinov2={{_base_.foundation_ckpts.dinov2}},
                             clip={{_base_.foundation_ckpts.clip}},
                             sam={{_base_.foundation_ckpts.sam}})))
