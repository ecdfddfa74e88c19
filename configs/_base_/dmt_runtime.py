# Runtime of DMT pretraining: mmpretrain's default runtime, checkpoint every epoch (keep 3),
# auto-resume, and exact resumability: every sample's augmentation is seeded from
# (seed, epoch, index) by the PerSampleSeed* wrappers of the dataset base, and model-side
# randomness (masking, teacher dropping, drop path) from (seed, iteration, rank) by
# IterationSeedHook -- so `diff_rank_seed` stays False (mmengine would otherwise give the
# sampler a fresh random seed on every start, and a resumed run would see another order).
# tools/train.py adds the same pieces to every config (see the README's Reliability
# section); they are spelled out here so the DMT configs say what their runs do.
_base_ = 'mmpretrain::_base_/default_runtime.py'

custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine', 'dmt_mm.optim',
                               'dmt_mm.datasets.fast_decode'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
                     logger=dict(type='LoggerHook', interval=50))
custom_hooks = [dict(type='IterationSeedHook')]
randomness = dict(seed=0, diff_rank_seed=False)
resume = True
