# Single-teacher baseline: DMT (TFD + SFD) from the mae teacher alone; otherwise identical to
# dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py.
_base_ = './dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'

model = dict(target_generator=dict(
    teachers=[{{_base_.mae_teacher}}],
    teacher_checkpoints=dict(_delete_=True, mae={{_base_.teacher_ckpts.mae}})))
