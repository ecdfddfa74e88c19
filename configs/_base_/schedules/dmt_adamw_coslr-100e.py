# The 100-epoch ablation schedule: as the 300-epoch one with 20 warm-up epochs.
_base_ = './dmt_adamw_coslr-300e.py'

warmup_epochs = 20
max_epochs = 100
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
