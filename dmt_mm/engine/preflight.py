"""Checks run before the Runner is built, so bad paths fail in a second with the fix,
not minutes later deep inside a dataset class."""
import os
import os.path as osp

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
