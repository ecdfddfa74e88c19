# DMT model: a ViT/16 student (arch chosen by the child config, ViT-S here) distilled from three
# frozen ViT-B/16 teachers: MAE (masked image modelling), MoCo v3 (contrastive) and iBOT
# (hybrid). DINO is defined too, as a drop-in for iBOT. See docs/dmt.md.
#
# Teacher checkpoints are the official files as published (docs/teachers.md); point the
# config field at your copy, e.g.
#   --cfg-options model.target_generator.teacher_checkpoints.mae=/ckpt/mae_pretrain_vit_base.pth
teacher_ckpts = dict(
    mae='checkpoints/mae_pretrain_vit_base.pth',
    mocov3='checkpoints/vit-b-300ep.pth.tar',
    ibot='checkpoints/ibot_vitb16_checkpoint_teacher.pth',
    dino='checkpoints/dino_vitbase16_pretrain.pth')

teacher_vit = dict(type='DMTViT', arch='base', img_size=224, patch_size=16)
mae_teacher = dict(type='FrozenViTTeacher', name='mae', backbone=teacher_vit,
                   checkpoint_format='mae')
mocov3_teacher = dict(type='FrozenViTTeacher', name='mocov3', backbone=teacher_vit,
                      checkpoint_format='mocov3')
ibot_teacher = dict(type='FrozenViTTeacher', name='ibot', backbone=teacher_vit,
                    checkpoint_format='ibot')
dino_teacher = dict(type='FrozenViTTeacher', name='dino', backbone=teacher_vit,
                    checkpoint_format='dino')

model = dict(
    type='DMT',
    backbone=dict(type='DMTViT', arch='vit-small', img_size=224, patch_size=16,
                  drop_path_rate=0.0),
    # the frozen teachers and their per-(teacher, block) target normalisers
    target_generator=dict(
        type='MultiTeacherTargetGenerator',
        teachers=[mae_teacher, mocov3_teacher, ibot_teacher],
        # one path per teacher above (a name that is not a teacher is an error)
        teacher_checkpoints=dict(mae=teacher_ckpts['mae'], mocov3=teacher_ckpts['mocov3'],
                                 ibot=teacher_ckpts['ibot']),
        # LNTargetNorm | IdentityTargetNorm | EMAStdTargetNorm | PHISTargetNorm (or a list
        # with one per teacher; shorthands 'ln' | 'none' | 'ema_std' | 'phis')
        target_norm=dict(type='LNTargetNorm')),
    # what is trained besides the student: TFD token heads, SFD adaptors, losses, fusion
    head=dict(
        type='DMTDistillHead',
        # TFD: a 2-layer MLP head per teacher on CLS + patch tokens; a = cls_weight
        tfd=dict(loss_weight=1.0, cls_weight=0.5,
                 token_head=dict(type='DMTTokenHead', hidden_dims=None)),
        # SFD: conv adaptor per teacher on the student's 2-D map; last block by default
        sfd=dict(loss_weight=1.0, teacher_layers=[-1], student_layers=None,
                 adaptor=dict(type='DMTSpatialAdaptor', hidden_channels=None,
                              norm_cfg=dict(type='LN2d', eps=1e-6))),
        loss=dict(type='SmoothL1DistillLoss', beta=2.0),
        fusion=dict(mode='fixed'),   # 'fixed' (1/K) | 'adaptive' | 'learned'
        teacher_drop_prob=0.0),
    mask_ratio=0.0,  # > 0 also needs neck=dict(type='MAEPretrainDecoder', ...)
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True))
