# The toy DMT config run the way the ImageNet DMT configs run: epoch-based (DefaultSampler,
# EpochBasedTrainLoop, by-epoch schedule converted to iterations, a checkpoint every epoch,
# keep 3). The toy world's 48 training scenes at 16 per batch make 3 iterations an epoch.
# The tests resume it after kill -9 and expect the uninterrupted run's weights, bit for bit.
_base_ = ['./dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py']

max_epochs = 12
warmup_epochs = 2
train_dataloader = dict(sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True)]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     max_keep_ckpts=3))
log_processor = dict(by_epoch=True)
