# ImageNet-1K fine-tuning of a DMT ViT-B/16 student: mmpretrain's MAE fine-tuning recipe
# unchanged (100 epochs, batch 1024 = 8 GPUs x 128, AdamW lr 2e-3, layer decay 0.65, drop
# path 0.1, RandAugment, random erasing, Mixup 0.8 / CutMix 1.0, label smoothing 0.1,
# global average pooling). Set the student with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (a DMT checkpoint or tools/model_converters/extract_student.py output). docs/classification.md.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine'], allow_failed_imports=False)
protocol = dict(name='imagenet-finetune', card='docs/protocols/imagenet_finetune.md',
                source='open-mmlab/mmpretrain '
                       'configs/mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py')

model = dict(
    backbone=dict(
        type='DMTViT', arch='vit-base',
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/dmt_vit-base-p16_student.pth')),
    head=dict(in_channels=768))

# mmpretrain's layer-decay constructor, extended to every model on the DMT student.
optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.65))
