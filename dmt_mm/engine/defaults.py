"""What every config gets from ``tools/train.py`` / ``tools/test.py``, shipped or not: exact
resume, the 1-process trajectory for N ranks, checkpoints that are complete and finite,
and bad input named instead of trained on.

Each piece is a switch of the config's ``reliability`` dict (all on by default), e.g.
``--cfg-options reliability.per_sample_randomness=False``:

==========================  ==========================================================
``per_sample_seeds``        the train dataloader wrapped in ``PerSampleSeedSampler`` /
                            ``PerSampleSeedDataset`` (augmentation seeded per sample)
``iteration_seed``          ``IterationSeedHook`` (model randomness seeded per iteration)
``per_sample_randomness``   distributed: random draws of the forward taken per sample
                            (model wrapper ``EquivalentDDP``; needs ``iteration_seed``,
                            off with ``compile``)
``sync_bn``                 distributed: BN layers synchronised across ranks
                            (mmengine's ``sync_bn='torch'``; gloo-capable on CPU)
``nonfinite_guard``         ``NonFiniteGuardHook``
``checkpoint_key_check``    ``CheckpointCompatibilityHook``
``image_check``             ``LoadImageOrSkip`` for ``LoadImageFromFile`` (training skips
                            an unreadable image with a warning, evaluation fails on it)
``label_range_check``       ``CheckLabelRange`` after mmseg's ``LoadAnnotations``
``coco_category_check``     ``ValidatedCocoDataset`` for mmdet's ``CocoDataset``
==========================  ==========================================================
"""
from mmengine.config import ConfigDict
from mmengine.logging import print_log

from dmt_mm.errors import ConfigError

RELIABILITY_DEFAULTS = dict(
    per_sample_seeds=True, iteration_seed=True, per_sample_randomness=True, sync_bn=True,
    nonfinite_guard=True, checkpoint_key_check=True, image_check=True,
    label_range_check=True, coco_category_check=True)
DDP_WRAPPERS = ('MMDistributedDataParallel', 'EquivalentDDP', 'SyncBNFallbackDDP')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def reliability_options(cfg):
    """The config's ``reliability`` switches over the defaults; unknown ones are refused."""
    given = dict(cfg.get('reliability', None) or {})
    unknown = sorted(set(given) - set(RELIABILITY_DEFAULTS))
    if unknown:
        raise ConfigError(f'reliability has no option {unknown}; the options are '
                          f'{sorted(RELIABILITY_DEFAULTS)} (see dmt_mm/engine/defaults.py)')
    return {**RELIABILITY_DEFAULTS, **given}


def _add_hook(cfg, hook_type, **kwargs):
    hooks = list(cfg.get('custom_hooks', None) or [])
    if hook_type not in {h.get('type') for h in hooks}:
        hooks.append(dict(type=hook_type, **kwargs))
    cfg.custom_hooks = hooks


def _datasets(dataset):
    """Every dataset config under wrappers (``dataset`` / ``datasets`` keys)."""
    if isinstance(dataset, (list, tuple)):
        for item in dataset:
            yield from _datasets(item)
        return
    if not isinstance(dataset, dict):
        return
    yield dataset
    for key in ('dataset', 'datasets'):
        if key in dataset:
            yield from _datasets(dataset[key])


def _transforms(pipeline):
    """Every transform dict of a pipeline, also inside TestTimeAug / RandomChoice."""
    for step in pipeline:
        if isinstance(step, list):
            yield from _transforms(step)
        elif isinstance(step, dict):
            yield step
            if isinstance(step.get('transforms'), list):
                yield from _transforms(step['transforms'])


def _insert_after(pipeline, match, make):
    """Insert ``make()`` after every transform ``match`` accepts (in a TestTimeAug, as a
    stage of its own after the stage holding it)."""
    i = 0
    while i < len(pipeline):
        step = pipeline[i]
        if isinstance(step, dict) and match(step):
            pipeline.insert(i + 1, make())
            i += 1
        elif isinstance(step, dict) and _type_name(step) == 'TestTimeAug':
            stages, j = step['transforms'], 0
            while j < len(stages):
                if any(isinstance(t, dict) and match(t) for t in stages[j]):
                    stages.insert(j + 1, [make()])
                    j += 1
                j += 1
        elif isinstance(step, dict) and isinstance(step.get('transforms'), list):
            _insert_after(step['transforms'], match, make)
        i += 1


def _type_name(step):
    return str(step.get('type', '')).split('.')[-1]


# --- training ------------------------------------------------------------------------------
def add_training_defaults(cfg, opts):
    """Per-sample seeded augmentation and per-iteration seeding (after :func:`resolve_seed`)."""
    seed = cfg.randomness.seed
    loader = cfg.get('train_dataloader')
    if opts['per_sample_seeds'] and loader and 'dataset' in loader:
        sampler = loader.get('sampler') or dict(type='DefaultSampler', shuffle=True)
        if _type_name(sampler) != 'PerSampleSeedSampler':
            loader.sampler = ConfigDict(type='PerSampleSeedSampler', sampler=sampler)
        loader.sampler.seed = seed
        if _type_name(loader.dataset) != 'PerSampleSeedDataset':
            loader.dataset = ConfigDict(type='PerSampleSeedDataset', dataset=loader.dataset)
    if opts['iteration_seed']:
        _add_hook(cfg, 'IterationSeedHook')


def resolve_seed(cfg, checkpoint_meta=None):
    """``randomness.seed``: the resumed checkpoint's, else the config's, else 0 (a run is
    reproducible by default; mmengine would draw a new one at every start)."""
    cfg.setdefault('randomness', ConfigDict())
    if cfg.randomness.get('seed') is None and not checkpoint_meta:
        cfg.randomness.seed = 0
        print_log('randomness.seed is not set: using 0 (--cfg-options randomness.seed=N '
                  'chooses another)', logger='current')
    resumed = (checkpoint_meta or {}).get('seed')
    if resumed is not None:
        if cfg.randomness.get('seed') not in (None, resumed):
            print_log(f'resuming a run made with randomness.seed={resumed}: using it instead '
                      f'of {cfg.randomness.seed}', logger='current', level=30)
        cfg.randomness.seed = resumed
    return cfg.randomness.seed


# --- distributed -------------------------------------------------------------------------------
def add_distributed_defaults(cfg, opts):
    """SyncBN and the model wrapper that follows the 1-process trajectory."""
    if cfg.launcher == 'none':
        return
    if opts['sync_bn'] and 'sync_bn' not in cfg:
        cfg.sync_bn = 'torch'
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        wrapper = ConfigDict(type='MMDistributedDataParallel', broadcast_buffers=False,
                             find_unused_parameters=cfg.get('find_unused_parameters', False))
    if _type_name(wrapper) in DDP_WRAPPERS:
        wrapper.type = 'EquivalentDDP'
        wrapper.per_sample_randomness = bool(opts['per_sample_randomness'] and
                                             opts['iteration_seed'] and not cfg.get('compile'))
    elif opts['per_sample_randomness']:
        print_log(f'model wrapper {wrapper.type}: random draws stay per rank (per-sample '
                  'draws need EquivalentDDP)', logger='current', level=30)
    cfg.model_wrapper_cfg = wrapper


# --- bad input -----------------------------------------------------------------------------
def _decode_head(model):
    model = model.get('module', model)  # SegTTAModel
    head = model.get('decode_head')
    return head[-1] if isinstance(head, (list, tuple)) else head


def add_input_protections(cfg, opts, loaders=LOADERS):
    """Unreadable images, label maps beyond the classes, COCO categories outside the
    class list: each named, with the fix, instead of trained or evaluated on."""
    import dmt_mm.datasets.robust_loading  # noqa: F401  (LoadImageOrSkip, CheckLabelRange)
    scope = cfg.get('default_scope')
    head = _decode_head(cfg.get('model') or {}) if scope == 'mmseg' else None
    num_classes = head.get('num_classes') if head else None
    for field in loaders:
        loader = cfg.get(field)
        if not loader or 'dataset' not in loader:
            continue
        for ds in _datasets(loader.dataset):
            if opts['coco_category_check'] and scope == 'mmdet' \
                    and _type_name(ds) == 'CocoDataset':
                import dmt_mm.datasets.coco  # noqa: F401  (ValidatedCocoDataset)
                ds.type = 'ValidatedCocoDataset'
            pipeline = ds.get('pipeline')
            if not isinstance(pipeline, list):
                continue
            if opts['image_check']:
                for step in _transforms(pipeline):
                    if _type_name(step) == 'LoadImageFromFile':
                        step.type = 'LoadImageOrSkip'
                        step.setdefault('on_corrupt',
                                        'skip' if field == 'train_dataloader' else 'error')
            if opts['label_range_check'] and num_classes and not any(
                    _type_name(t) == 'CheckLabelRange' for t in _transforms(pipeline)):
                _insert_after(pipeline, lambda t: _type_name(t) == 'LoadAnnotations',
                              lambda: ConfigDict(type='CheckLabelRange', num_classes=num_classes,
                                                 ignore_index=head.get('ignore_index', 255)))


def add_runner_hooks(cfg, opts, distributed):
    """Atomic signed checkpoints, the non-finite guard, the checkpoint / model key check,
    the empty-dataset check and, for distributed runs, the rank agreement check."""
    from dmt_mm.checkpoint import ATOMIC_BACKEND
    checkpoint_hook = cfg.get('default_hooks', {}).get('checkpoint')
    if checkpoint_hook is not None and checkpoint_hook.get('backend_args') is None:
        checkpoint_hook.backend_args = dict(backend=ATOMIC_BACKEND)
    if opts['nonfinite_guard']:
        _add_hook(cfg, 'NonFiniteGuardHook')
    if distributed:
        _add_hook(cfg, 'RankConsistencyHook')
    if opts['checkpoint_key_check']:
        _add_hook(cfg, 'CheckpointCompatibilityHook')
    _add_hook(cfg, 'DatasetSanityHook')
