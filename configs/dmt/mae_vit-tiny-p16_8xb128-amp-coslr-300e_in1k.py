# Baseline: the student's standard MAE pretraining (mmpretrain's MAE recipe) with a ViT-Tiny/16
# encoder, 300 epochs, batch 1024 = 8 x 128, base lr 1.5e-4 x batch / 256.
# Run as the DMT configs run (configs/_base_/schedules/dmt_adamw_coslr-300e.py): bf16 AMP
# without a loss scaler (mmpretrain's recipe: fp16 with a dynamic scaler; a numerics
# choice, not a recipe change), fused AdamW, merged param groups, torch.compile.
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.optim'],
                      allow_failed_imports=False)

model = dict(backbone=dict(arch='deit-tiny'), neck=dict(embed_dim=192))
# collate_fn restated: inherited through 'mmpretrain::' it carries a `_scope_` key that
# mmengine's Runner.build_dataloader passes on to the collate function (a TypeError)
train_dataloader = dict(batch_size=128, num_workers=10,
                        collate_fn=dict(_delete_=True, type='default_collate'))
optim_wrapper = dict(dtype='bfloat16', loss_scale=dict(_delete_=True, enabled=False),
                     constructor='MergedGroupsOptimWrapperConstructor',
                     optimizer=dict(lr=1.5e-4 * 1024 / 256, fused=True))
compile = True
auto_scale_lr = dict(base_batch_size=1024)
