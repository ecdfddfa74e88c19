# DMT pretraining schedule (docs/dmt.md): AdamW betas (0.9, 0.95), weight decay 0.05,
# base lr 1.5e-4 x batch / 256 (6e-4 at the total batch 1024 = 8 GPUs x 128), 40 warm-up
# epochs then cosine to 300 epochs, AMP. `--auto-scale-lr` rescales lr to another batch.
#
# How it runs (docs/performance.md): bf16 autocast without a loss scaler (bf16 has fp32's
# exponent range; `loss_scale=dict(enabled=False)` makes mmengine's GradScaler pass the loss
# and the step through: no unscale pass, no inf check, no host sync), fused AdamW, one param
# group per distinct setting (the same updates as mmengine's one group per tensor), and
# torch.compile of the train step through mmengine's `compile` option.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1.5e-4 * 1024 / 256, betas=(0.9, 0.95), weight_decay=0.05,
                   fused=True),
    paramwise_cfg=dict(custom_keys={
        'ln': dict(decay_mult=0.0),
        'norm': dict(decay_mult=0.0),
        'bias': dict(decay_mult=0.0),
        'pos_embed': dict(decay_mult=0.0),
        'mask_token': dict(decay_mult=0.0),
        'cls_token': dict(decay_mult=0.0),
        'fusion_log_vars': dict(decay_mult=0.0)}))

warmup_epochs = 40
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True)]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# mmengine compiles `model.train_step` (the wrapped model's under DDP) before the first
# iteration. The project's runner keeps the data preprocessor eager (its data samples'
# strings made dynamo recompile the step for every batch), so dynamo compiles what the step
# calls: the forward (student, teachers, target norms, heads, losses) is one graph; nothing is
# compiled after the second iteration (docs/performance.md).
compile = True
auto_scale_lr = dict(base_batch_size=1024)
