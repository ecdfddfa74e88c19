"""tools/train.py as a user sees it: a quiet console (no third-party deprecation notices)
and the --tensorboard switch writing the logged scalars as TensorBoard events."""
import glob
import json
import os.path as osp

import pytest
from conftest import CONFIGS, TOOLS, run_tool
from mmengine.config import Config

TOY_MAE = CONFIGS / 'toy' / 'mae_vit-toy-p16_1xb8-20it_toyworld.py'
NOISE = ('pkg_resources', 'will be deprecated', 'is the alias of')


@pytest.mark.slow
def test_help_starts_quietly(tmp_path):
    out = run_tool([TOOLS / 'train.py', '--help'], cwd=tmp_path).stdout
    assert '--tensorboard' in out
    assert not [line for line in out.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.parametrize('config', [
    TOY_MAE, CONFIGS / 'toy' / 'upernet_vit-toy-f2p_1xb4-120it_toyworld-128x128.py',
    CONFIGS / 'toy' / 'cascade-mask-rcnn_vit-toy-simplefpn_1xb4-300it_toyworld.py'])
def test_tensorboard_backend_is_added_beside_the_scope_visualizer(config):
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool', TOOLS / 'train.py')
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    cfg = Config.fromfile(str(config))
    before = [b['type'] for b in cfg.visualizer.vis_backends]
    args = train_tool.parse_args([str(config), '--tensorboard'])
    cfg = train_tool.merge_args(cfg, args)
    after = [b['type'] for b in cfg.visualizer.vis_backends]
    assert after == before + ['TensorboardVisBackend']
    assert train_tool.merge_args(cfg, args).visualizer.vis_backends == cfg.visualizer.vis_backends


@pytest.mark.slow
def test_tensorboard_events_hold_the_logged_scalars_and_the_console_is_quiet(
        small_toy_world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    work_dir = tmp_path / 'run'
    out = run_tool([TOOLS / 'train.py', TOY_MAE, '--work-dir', work_dir, '--tensorboard',
                    '--cfg-options', 'train_cfg.max_iters=3', 'default_hooks.logger.interval=1'],
                   cwd=small_toy_world).stdout
    noise = [line for line in out.splitlines() if any(n in line for n in NOISE)]
    assert not noise, noise
    (scalars_file, ) = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    logged = [json.loads(line) for line in open(scalars_file)]
    events = EventAccumulator(osp.dirname(scalars_file)).Reload()
    assert 'loss' in events.Tags()['scalars']
    from_events = {e.step: e.value for e in events.Scalars('loss')}
    from_json = {row['step']: row['loss'] for row in logged if 'loss' in row}
    assert sorted(from_events) == sorted(from_json) == [1, 2, 3]
    for step, value in from_json.items():
        assert from_events[step] == pytest.approx(value, rel=1e-6)
