# ImageNet-1K linear probe of a DMT ViT-B/16 student: mmpretrain's MAE linear recipe
# unchanged (all 12 blocks frozen, CLS token after the final norm, BatchNorm neck + linear
# head, LARS lr 6.4 at batch 16384 = 8 GPUs x 2048, 90 epochs, AMP). Set the student with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH   (see docs/classification.md)
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine'], allow_failed_imports=False)
protocol = dict(name='imagenet-linear', card='docs/protocols/imagenet_linear.md',
                source='open-mmlab/mmpretrain '
                       'configs/mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py')

model = dict(
    backbone=dict(
        type='DMTViT', arch='vit-base',
        frozen_stages=12,  # every block; with final_norm the last LayerNorm is frozen too
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    neck=dict(input_features=768),
    head=dict(in_channels=768))

# lr 6.4 is for 8 x 2048 images; mmpretrain's linear config keeps the 1024 of the schedule
# it inherits, which would make --auto-scale-lr multiply the lr by 16.
auto_scale_lr = dict(base_batch_size=16384)
