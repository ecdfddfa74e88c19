# Shared by the pipeline's toy pretraining configs (the three teachers and DMT): the
# teacher architecture, which the DMT config must match to load the teachers, the toy
# world's unlabeled images (scenes + single-object crops, labels never read; each config
# adds its own pipeline) and the schedule.
# Names carry a `toy_` prefix so they never collide with the upstream bases they sit beside.
toy_data_root = 'data/toy_world/'
toy_img_size = 64
toy_unlabeled_prefixes = ['images/train', 'cls/train']
toy_unlabeled = dict(type='ConcatDataset', datasets=[
    dict(type='ToyWorldImageFolder', data_root=toy_data_root, data_prefix=prefix,
         with_label=False)
    for prefix in toy_unlabeled_prefixes])
# a "ViT-B" of the toy world: wider than the 64-wide toy student, 4 blocks
toy_teacher_arch = dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=384)

toy_max_iters = 300
toy_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=toy_max_iters // 10),
    dict(type='CosineAnnealingLR', T_max=toy_max_iters - toy_max_iters // 10, by_epoch=False,
         begin=toy_max_iters // 10, end=toy_max_iters, eta_min=1e-5)]
toy_hooks = dict(logger=dict(interval=10),
                 checkpoint=dict(interval=toy_max_iters, by_epoch=False, max_keep_ckpts=1))
# one augmented view (MAE, DMT): as in the paper, student and teachers see the same pixels
toy_one_view_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=toy_img_size, crop_ratio_range=(0.3, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')]
