"""Compare resolved benchmark configs with the reference tables of their sources.

A protocol has a reference table, ``tests/data/protocols/<name>.yaml`` (values transcribed
from the official files, each parameter naming the file it comes from), and a protocol
card, ``docs/protocols/<name>.md``, whose table lists every parameter with our value, the
source's value, the source file and, where they differ, why. The card's table is the one
list of intended differences: :func:`check_protocol` fails when a config value differs from
the source and the card gives no reason, when the card shows a value the config does not
have, or when a card row has no reference parameter.

Reference parameters read a config value with ``get``:

* a dotted path with ``[i]`` indices and ``[*]`` (every element), e.g.
  ``model.roi_head.bbox_head[*].loss_bbox``; a trailing ``?`` reads an absent key as null;
* ``norm:<path>``: the kind of a norm config (``LN``, ``BN``, ``SyncBN``, ...);
* ``fn:<name>``: a value derived from the whole config by a function of :data:`DERIVED`
  (e.g. ``no_weight_decay`` builds the model on the meta device and runs the config's own
  optimizer constructor).
"""
import ast
import copy
import functools
import importlib
import math
import os.path as osp
import re
from pathlib import Path

import mmengine.config.utils as mmengine_config_utils
import yaml
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
REFERENCES = REPO / 'tests' / 'data' / 'protocols'
SIZES = ('T', 'S', 'B')
HEADER = ['parameter', 'sizes', 'ours', 'source', 'source file', 'why different']
NONE = 'none'  # a card's "source" cell for sizes the source has no value for


class Missing:
    def __repr__(self):
        return '<absent>'


MISSING = Missing()


def load_reference(name):
    with open(REFERENCES / f'{name}.yaml') as f:
        return yaml.safe_load(f)


def reference_names():
    return sorted(p.stem for p in REFERENCES.glob('*.yaml'))


_mmengine_load = mmengine_config_utils.load


@functools.lru_cache(maxsize=None)
def _read_metafile(path):
    return _mmengine_load(path)


def _load_metafiles_once(path, *args, **kwargs):
    """mmengine reads every metafile of a package again for each ``package::`` config it
    resolves (about a second per config here); they do not change during a test run, so
    they are read once (read-only use: mmengine only looks entries up)."""
    if not args and not kwargs and isinstance(path, str) and \
            f'{osp.sep}.mim{osp.sep}' in path and path.endswith(('.yml', '.yaml')):
        return _read_metafile(path)
    return _mmengine_load(path, *args, **kwargs)


mmengine_config_utils.load = _load_metafiles_once


@functools.lru_cache(maxsize=None)
def load_config(path):
    return Config.fromfile(str(REPO / path))


# --- reading values ------------------------------------------------------------------------
def _step(node, token):
    if node is MISSING:
        return MISSING
    if token == '*':
        return list(node)
    if token.isdigit() or token.startswith('-'):
        return node[int(token)]
    return node.get(token, MISSING) if hasattr(node, 'get') else MISSING


def read_path(cfg, path):
    """Value of a dotted path; ``[*]`` maps the rest of the path over a list."""
    optional = path.endswith('?')
    tokens = re.findall(r'[^.\[\]]+', path.rstrip('?'))
    node = cfg
    for i, token in enumerate(tokens):
        if token == '*':
            rest = '.'.join(tokens[i + 1:])
            return [read_path(item, rest) if rest else item for item in node]
        node = _step(node, token)
    if node is MISSING and optional:
        return None
    return node


def norm_kind(norm_cfg):
    if isinstance(norm_cfg, list):
        return [norm_kind(c) for c in norm_cfg]
    if norm_cfg is None or norm_cfg is MISSING:
        return norm_cfg
    kind = norm_cfg['type'].split('.')[-1]
    return {'LN2d': 'LN', 'LayerNorm2d': 'LN', 'LayerNorm': 'LN'}.get(kind, kind)


def get_value(cfg, expr, path=None):
    if expr.startswith('fn:'):
        return DERIVED[expr[3:]](cfg, path)
    if expr.startswith('norm:'):
        return norm_kind(read_path(cfg, expr[5:]))
    return read_path(cfg, expr)


def normalise(value):
    """Plain data: tuples as lists, config dicts as dicts, without mmengine's ``_scope_``."""
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if hasattr(value, 'items'):
        return {k: normalise(v) for k, v in value.items() if k != '_scope_'}
    return value


def same(a, b):
    a, b = normalise(a), normalise(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# --- derived values ------------------------------------------------------------------------
def _gpus(cfg, path):
    match = re.search(r'_(\d+)xb(\d+)', Path(path).name)
    assert match, f'{path}: the name does not say GPUS x BATCH'
    return int(match.group(1))


def _total_batch(cfg, path):
    return _gpus(cfg, path) * cfg.train_dataloader.batch_size


def _repeats(cfg):
    dataset = cfg.train_dataloader.dataset
    return dataset.times if dataset.type == 'RepeatDataset' else 1


def _coco_epochs(cfg, path):
    return cfg.train_cfg.max_epochs * _repeats(cfg)


def _lr_step_coco_epochs(cfg, path):
    step = next(s for s in cfg.param_scheduler if s.type == 'MultiStepLR')
    assert step.by_epoch
    return [m * _repeats(cfg) for m in step.milestones]


def _amp_dtype(cfg, path):
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        return 'float32'
    return str(wrapper.get('dtype') or 'float16')  # torch.autocast's CUDA default


def _train_pipeline(cfg):
    dataset = cfg.train_dataloader.dataset
    return (dataset.dataset if dataset.type == 'RepeatDataset' else dataset).pipeline


def _transform(pipeline, kind):
    found = [t for t in pipeline if t.type == kind]
    assert len(found) == 1, f'{len(found)} {kind} transforms in {pipeline}'
    return found[0]


def _train_flip_prob(cfg, path):
    return _transform(_train_pipeline(cfg), 'RandomFlip').prob


def _ms_crop_policies(cfg):
    return _transform(_train_pipeline(cfg), 'RandomChoice').transforms


def _ms_crop_short_sides(cfg, path):
    resizes = [t for policy in _ms_crop_policies(cfg) for t in policy
               if t.type == 'RandomChoiceResize']
    return [[min(s) for s in t.scales] for t in resizes]


def _ms_crop_long_side(cfg, path):
    longs = {max(s) for policy in _ms_crop_policies(cfg) for t in policy
             if t.type == 'RandomChoiceResize' for s in t.scales}
    assert len(longs) == 1, longs
    return longs.pop()


def _ms_crop_crop_size(cfg, path):
    crops = [t.crop_size for policy in _ms_crop_policies(cfg) for t in policy
             if t.type == 'RandomCrop']
    assert len(crops) == 1, crops
    return crops[0]


def _test_resize_scale(cfg, path):
    return _transform(cfg.test_dataloader.dataset.pipeline, 'Resize').scale


def _lsj_ratio_range(cfg, path):
    return _transform(_train_pipeline(cfg), 'RandomResize').ratio_range


def _lsj_crop_size(cfg, path):
    return _transform(_train_pipeline(cfg), 'RandomCrop').crop_size


def _rel_pos_img_size(cfg, path):
    size = cfg.model.backbone.get('rel_pos_img_size') or cfg.model.backbone.img_size
    return list(size) if isinstance(size, (list, tuple)) else [size, size]


def _img_size(cfg, path):
    size = cfg.model.get('module', cfg.model).backbone.img_size
    return list(size) if isinstance(size, (list, tuple)) else [size, size]


def _out_with_norm(cfg, path):
    backbone = cfg.model.get('module', cfg.model).backbone
    return bool(backbone.get('out_with_norm', False))


def _input_canvas(cfg, path):
    """Padded input size of the test pipeline + data preprocessor for a 640 x 427 image
    (the data preprocessor pads training batches the same way)."""
    import numpy as np
    import torch
    from mmdet.registry import MODELS, TRANSFORMS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    resize = TRANSFORMS.build(copy.deepcopy(_transform(cfg.test_dataloader.dataset.pipeline,
                                                       'Resize')))
    image = resize(dict(img=np.zeros((427, 640, 3), np.uint8)))['img']
    preprocessor = MODELS.build(copy.deepcopy(cfg.model.data_preprocessor))
    batch = preprocessor(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]), False)
    return list(batch['inputs'].shape[-2:])


def _ms_test_short_sides(cfg, path):
    """Short sides of the multi-scale test's resizes (of the ``-ms`` config)."""
    tta = _transform(cfg.test_dataloader.dataset.pipeline, 'TestTimeAug')
    sides = []
    for t in tta.transforms[0]:
        assert t.type == 'ResizeShortestEdge', t
        sides.append(t.scale)
    return sides


def _ms_test_flips(cfg, path):
    tta = _transform(cfg.test_dataloader.dataset.pipeline, 'TestTimeAug')
    return sorted(t.prob for t in tta.transforms[1] if t.type == 'RandomFlip')


def _tta_model(cfg, path):
    return cfg.model.type


NO_DECAY_KINDS = ('pos_embed', 'cls_token', 'rel_pos tables', 'layer scales', 'backbone norms',
                  'other norms', 'biases', 'weights')


def _param_kind(name, module_is_norm):
    if name.endswith('pos_embed'):
        return 'pos_embed'
    if name.endswith('cls_token'):
        return 'cls_token'
    if name.endswith(('rel_pos_h', 'rel_pos_w')):
        return 'rel_pos tables'
    if '.gamma' in name:
        return 'layer scales'
    if module_is_norm:
        return 'backbone norms' if name.startswith('backbone.') else 'other norms'
    return 'biases' if name.endswith('bias') else 'weights'


@functools.lru_cache(maxsize=None)
def _weight_decays(path):
    """{parameter kind: set of weight decays} of the trainable parameters, from the config's
    own optimizer constructor on the model built on the meta device."""
    import torch
    from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, DefaultScope
    cfg = load_config(path)
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.models')
    from mmengine.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope), \
            MODELS.switch_scope_and_registry(scope) as models, torch.device('meta'):
        model = models.build(copy.deepcopy(cfg.model))
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=wrapper.pop('constructor', 'DefaultOptimWrapperConstructor'),
        optim_wrapper_cfg=wrapper, paramwise_cfg=wrapper.get('paramwise_cfg')))
    groups = []
    constructor.add_params(groups, model)
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm)
    is_norm = {f'{m}.{p}' if m else p: isinstance(mod, norm_types)
               for m, mod in model.named_modules() for p, _ in mod.named_parameters(
                   recurse=False)}
    names = {id(p): n for n, p in model.named_parameters()}
    decays = {}
    for group in groups:
        for param in group['params']:
            name = names[id(param)]
            kind = _param_kind(name, is_norm[name])
            # a group without its own weight decay takes the optimizer's
            decay = group.get('weight_decay', wrapper.optimizer.get('weight_decay', 0.0))
            decays.setdefault(kind, set()).add(decay)
    return decays


def _no_weight_decay(cfg, path):
    """The parameter kinds that get no weight decay (every parameter of the kind)."""
    decays = _weight_decays(path)
    mixed = [k for k, d in decays.items() if len(d) > 1]
    assert not mixed, f'{path}: kinds with mixed weight decay: {mixed}: {decays}'
    return sorted(k for k, d in decays.items() if d == {0.0})


DERIVED = dict(gpus=_gpus, total_batch=_total_batch, coco_epochs=_coco_epochs,
               lr_step_coco_epochs=_lr_step_coco_epochs, amp_dtype=_amp_dtype,
               train_flip_prob=_train_flip_prob, ms_crop_short_sides=_ms_crop_short_sides,
               ms_crop_long_side=_ms_crop_long_side, ms_crop_crop_size=_ms_crop_crop_size,
               test_resize_scale=_test_resize_scale, lsj_ratio_range=_lsj_ratio_range,
               lsj_crop_size=_lsj_crop_size, rel_pos_img_size=_rel_pos_img_size,
               out_with_norm=_out_with_norm, img_size=_img_size, input_canvas=_input_canvas,
               ms_test_short_sides=_ms_test_short_sides, ms_test_flips=_ms_test_flips,
               tta_model=_tta_model, no_weight_decay=_no_weight_decay)


# --- the card ---------------------------------------------------------------------------
def _cell_value(text):
    text = text.strip()
    if text == NONE:
        return NONE
    match = re.fullmatch(r'`(.*)`', text)
    if not match:
        raise ValueError(f'value cell {text!r} is neither `literal` nor {NONE}')
    return ast.literal_eval(match.group(1))


def parse_card(path):
    """The rows of the card's protocol table: dicts keyed by :data:`HEADER`, with the sizes
    expanded to a tuple and the value cells parsed (``none`` stays ``'none'``)."""
    lines = Path(path).read_text().splitlines()
    start = next((i for i, line in enumerate(lines)
                  if [c.strip() for c in line.strip().strip('|').split('|')] == HEADER), None)
    if start is None:
        raise ValueError(f'{path}: no table with the header {" | ".join(HEADER)}')
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) != len(HEADER):
            raise ValueError(f'{path}: row with {len(cells)} cells: {line}')
        row = dict(zip(HEADER, cells))
        sizes = SIZES if row['sizes'] == 'all' else tuple(
            s.strip() for s in row['sizes'].split(','))
        if not set(sizes) <= set(SIZES):
            raise ValueError(f'{path}: sizes {row["sizes"]!r} (use all or T, S, B)')
        row.update(sizes=sizes, ours=_cell_value(row['ours']),
                   source=_cell_value(row['source']),
                   parameter=row['parameter'].replace('\\|', '|'))
        rows.append(row)
    return rows


# --- the check ----------------------------------------------------------------------------
def source_value(param, size):
    source = param['source']
    if isinstance(source, dict) and set(source) <= set(SIZES) and source:
        return source.get(size, NONE)
    return source


def source_file(ref, param, size):
    """Path of the file a parameter's value for ``size`` comes from (``from`` names a source
    id, or one per size)."""
    origin = param['from']
    if isinstance(origin, dict):
        origin = origin.get(size) or next(iter(origin.values()))
    return ref['sources'][origin]['path']


def variant_configs(ref, variant):
    """The configs a parameter reads: the main ones, the multi-scale test configs
    (``variant: ms``) or those of a named variant (``variants: {name: {size: path}}``)."""
    if variant is None:
        return ref['configs']
    if variant == 'ms':
        return ref['test_configs']
    return ref['variants'][variant]


def check_protocol(name):
    """Problems (strings) of one protocol: config vs reference vs card."""
    ref = load_reference(name)
    card = REPO / ref['card']
    rows = parse_card(card)
    problems = []
    params = {p['name']: p for p in ref['parameters']}
    for row in rows:
        if row['parameter'] not in params:
            problems.append(f'card row {row["parameter"]!r} has no reference parameter')
    variants = [c for v in ref.get('variants', {}).values() for c in v.values()]
    for path in list(ref['configs'].values()) + list(ref.get('test_configs', {}).values()) + \
            variants:
        marker = load_config(path).get('protocol')
        if not marker or marker.get('name') != ref['protocol'] or marker.get('card') != \
                ref['card']:
            problems.append(f'{path}: protocol marker {marker} does not name {ref["protocol"]} '
                            f'and {ref["card"]}')
    for param in ref['parameters']:
        configs = variant_configs(ref, param.get('variant'))
        for size in SIZES:
            ours = get_value(load_config(configs[size]), param['get'], configs[size])
            expected = source_value(param, size)
            found = [r for r in rows if r['parameter'] == param['name'] and size in r['sizes']]
            where = f'{param["name"]!r} ({size})'
            if len(found) != 1:
                problems.append(f'{where}: {len(found)} card rows (need one)')
                continue
            row = found[0]
            if not same(row['ours'], ours):
                problems.append(f'{where}: the card shows ours = {row["ours"]!r}, the config '
                                f'has {normalise(ours)!r}')
            if not (row['source'] == NONE if expected == NONE else
                    row['source'] != NONE and same(row['source'], expected)):
                problems.append(f'{where}: the card shows source = {row["source"]!r}, the '
                                f'reference has {normalise(expected)!r}')
            src_file = source_file(ref, param, size)
            if row['source file'].strip('`') != src_file:
                problems.append(f'{where}: source file {row["source file"]!r}, the reference '
                                f'names {src_file!r}')
            differs = expected == NONE or not same(ours, expected)
            if differs and not row['why different']:
                problems.append(f'{where}: ours {normalise(ours)!r} differs from the source '
                                f'{normalise(expected)!r} and the card gives no reason')
            if not differs and row['why different']:
                problems.append(f'{where}: equal to the source, but the card gives a reason '
                                f'({row["why different"]!r})')
    return problems
