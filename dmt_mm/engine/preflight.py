"""Checks run before the Runner is built, so bad paths and lengths fail in a second with
the fix, not minutes later deep inside a dataset class (or not at all: a negative
``max_iters`` trains nothing and exits 0)."""
import os
import os.path as osp

from dmt_mm.errors import ConfigError

WRAPPER_KEYS = ('dataset', 'datasets')


def _leaf_datasets(cfg, path):
    """Yield (config path, dataset cfg) for every real dataset under wrappers."""
    if isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            yield from _leaf_datasets(item, f'{path}[{i}]')
        return
    nested = [k for k in WRAPPER_KEYS if k in cfg]
    if nested:
        for key in nested:
            yield from _leaf_datasets(cfg[key], f'{path}.{key}')
    else:
        yield path, cfg


def _check_path(path, what, field, key):
    if path and not osp.exists(path):
        raise FileNotFoundError(
            f'{field}: {what} {path!r} does not exist (working directory {os.getcwd()!r}). '
            f'Put the data there (see the README section on data preparation) or point the '
            f'config at it: --cfg-options {key}=/path/to/it')


def check_data_paths(cfg, fields=('train_dataloader', 'val_dataloader')):
    """Every dataset's data_root, ann_file and data_prefix folders must exist.

    Toy-world datasets generate their data on first use and are skipped.
    """
    for field in fields:
        loader = cfg.get(field)
        if not loader or 'dataset' not in loader:
            continue
        for path, dataset in _leaf_datasets(loader['dataset'], f'{field}.dataset'):
            if str(dataset.get('type', '')).startswith('ToyWorld'):
                continue
            root = dataset.get('data_root') or ''
            _check_path(root, 'data_root', path, f'{path}.data_root')
            ann_file = dataset.get('ann_file') or ''
            if ann_file:
                _check_path(osp.join(root, ann_file), 'ann_file', path, f'{path}.ann_file')
            prefix = dataset.get('data_prefix') or {}
            items = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
            for name, folder in items:
                if isinstance(folder, str) and folder:
                    key = f'{path}.data_prefix' + (f'.{name}' if name else '')
                    _check_path(osp.join(root, folder), 'data folder', path, key)
    for field in ('val_evaluator', 'test_evaluator'):
        loader_field = field.replace('_evaluator', '_dataloader')
        loader = cfg.get(loader_field)
        if loader_field not in fields or not loader or 'dataset' not in loader or any(
                str(d.get('type', '')).startswith('ToyWorld')
                for _, d in _leaf_datasets(loader['dataset'], loader_field)):
            continue
        evaluators = cfg.get(field) or []
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            ann_file = evaluator.get('ann_file')
            if ann_file:
                _check_path(ann_file, 'ann_file', field, f'{field}.ann_file')


def _positive(value, key, what, allow=()):
    if value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f'{key}={value!r}: {what} must be a positive integer '
                          f'(e.g. --cfg-options {key}=...)')


def check_lengths(cfg, fields=('train_dataloader', 'val_dataloader')):
    """Lengths, intervals and batch sizes must be positive integers."""
    train_cfg = cfg.get('train_cfg') or {}
    if 'train_dataloader' in fields:
        for key, what in (('max_iters', 'the number of training iterations'),
                          ('max_epochs', 'the number of training epochs'),
                          ('val_interval', 'the validation interval')):
            if key in train_cfg:
                _positive(train_cfg[key], f'train_cfg.{key}', what)
        for name in ('checkpoint', 'logger'):
            hook = (cfg.get('default_hooks') or {}).get(name)
            if hook and 'interval' in hook:  # -1: never (CheckpointHook)
                _positive(hook['interval'], f'default_hooks.{name}.interval',
                          f'the {name} interval', allow=(-1, ) if name == 'checkpoint' else ())
    for field in fields:
        loader = cfg.get(field)
        if loader and 'batch_size' in loader:
            _positive(loader['batch_size'], f'{field}.batch_size', 'the batch size per GPU')
        if loader and loader.get('num_workers', 0) < 0:
            raise ConfigError(f'{field}.num_workers={loader["num_workers"]}: must be 0 or '
                              'more')
