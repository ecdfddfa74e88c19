# Runtime of DMT pretraining: mmpretrain's default runtime, checkpoint every epoch (keep 3),
# auto-resume, per-rank seeds.
_base_ = 'mmpretrain::_base_/default_runtime.py'

custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.engine'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
                     logger=dict(type='LoggerHook', interval=50))
randomness = dict(seed=0, diff_rank_seed=True)
resume = True
