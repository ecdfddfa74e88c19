"""Every config under configs/ parses, imports its modules and builds its model.

Parametrised over the folder, so a new config is tested automatically. Models are built on
the ``meta`` device (no memory, no init), which makes ViT-B teachers free to build.
"""
import importlib
import os
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, TOOLS, rel
from mmengine.config import Config
from mmengine.registry import DefaultScope

CONFIG_FILES = sorted(p for p in CONFIGS.rglob('*.py') if '_base_' not in p.parts)


def build_model_from(cfg):
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    scope = cfg.get('default_scope')
    assert scope in ('mmpretrain', 'mmdet', 'mmseg'), f'config sets default_scope={scope!r}'
    importlib.import_module({'mmpretrain': 'mmpretrain.models', 'mmdet': 'mmdet.models',
                             'mmseg': 'mmseg.models'}[scope])
    from mmengine.registry import MODELS
    # overwrite (not init) the default scope, so later tests in this process are unaffected
    with DefaultScope.overwrite_default_scope(scope), \
            MODELS.switch_scope_and_registry(scope) as models, torch.device('meta'):
        assert DefaultScope.get_current_instance().scope_name == scope
        return models.build(cfg.model)


def test_there_are_configs():
    assert len(CONFIG_FILES) >= 3


def _first_of_each_folder(paths):
    """Fast subset: the first config of each folder; the others are marked slow."""
    seen = set()
    for path in paths:
        fast = path.parent not in seen
        seen.add(path.parent)
        yield pytest.param(path, id=rel(path), marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize('path', list(_first_of_each_folder(CONFIG_FILES)))
def test_config_builds(path):
    cfg = Config.fromfile(str(path))
    imports = cfg.get('custom_imports')
    assert imports is not None and imports.get('allow_failed_imports') is False, \
        'configs must set custom_imports with allow_failed_imports=False'
    model = build_model_from(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_every_benchmark_config_has_a_protocol_card():
    """Each config under configs/benchmarks belongs to one protocol: its reference table
    (tests/data/protocols) lists it, its card exists and names its source at the top."""
    from protocols import REPO, load_reference, reference_names
    listed = {}
    for name in reference_names():
        ref = load_reference(name)
        card = (REPO / ref['card']).read_text()
        assert '**Source:**' in card.split('\n## ')[0], f'{ref["card"]} names no source on top'
        variants = [c for v in ref.get('variants', {}).values() for c in v.values()]
        for path in list(ref['configs'].values()) + list(ref.get('test_configs', {}).values()) \
                + variants:
            assert path not in listed, f'{path} is in {listed.get(path)} and {name}'
            listed[path] = name
    shipped = {rel(p) for p in (CONFIGS / 'benchmarks').rglob('*.py') if '_base_' not in p.parts}
    assert shipped == set(listed), (shipped ^ set(listed))


@pytest.mark.parametrize('script,config', [
    ('slurm_train.sh', 'dmt/dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-300e_in1k.py'),
    ('slurm_train.sh', 'benchmarks/mmdet/cascade-mask-rcnn_dmt-vit-small-p16-win14-simplefpn_'
                       '4conv1fc_8xb8-amp-lsj-100e_coco.py'),
    ('slurm_test.sh', 'benchmarks/mmseg/upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-'
                      '512x512-ms.py')])
@pytest.mark.slow
def test_slurm_tasks_get_a_cpu_per_loader_worker(script, config, tmp_path):
    """tools/slurm_*.sh ask srun for the config's loader workers + 1 CPUs per task (a fake
    srun on PATH prints its arguments); CPUS_PER_TASK still wins."""
    srun = tmp_path / 'srun'
    srun.write_text('#!/bin/sh\necho "$@"\n')
    srun.chmod(0o755)
    cfg = Config.fromfile(str(CONFIGS / config), import_custom_modules=False)
    loader = cfg.train_dataloader if script == 'slurm_train.sh' else cfg.test_dataloader
    env = dict(os.environ, PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}',
               PYTHON=sys.executable)
    for extra, cpus in (({}, loader.num_workers + 1), ({'CPUS_PER_TASK': '3'}, 3)):
        out = subprocess.run(['bash', str(TOOLS / script), 'part', 'job', str(CONFIGS / config),
                              'work_dir'], env=dict(env, **extra), capture_output=True,
                             text=True, check=True).stdout
        assert f'--cpus-per-task={cpus}' in out.split()
