# DMT: ViT-Small/16 student, teachers MAE + MoCo v3 + iBOT (ViT-B/16), TFD + SFD, 300 epochs on
# ImageNet-1K, 8 GPUs x 128 images, AMP. Teacher paths:
# model.target_generator.teacher_checkpoints.*; data: data_root.
_base_ = [
    '../_base_/models/dmt_vit-p16_mae-mocov3-ibot.py',
    '../_base_/datasets/imagenet_bs128_dmt.py',
    '../_base_/schedules/dmt_adamw_coslr-300e.py',
    '../_base_/dmt_runtime.py',
]

model = dict(backbone=dict(arch='vit-small'))
