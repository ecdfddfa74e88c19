"""Shared test helpers: paths, the shared fixtures folder, running tools as subprocesses,
starting a probe from a student file, comparing optimizers step for step."""
import os
import os.path as osp
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
TOOLS = REPO / 'tools'
TEST_DATA = REPO / 'tests' / 'data'
# ../shared/data beside the checkout (CI and developer machines), or DMT_SHARED_DATA.
SHARED_DATA = Path(os.environ.get('DMT_SHARED_DATA', REPO.parent / 'shared' / 'data'))

# pytest-xdist runs one worker per core (tools/run_tests.sh): one thread each, so that the
# workers never oversubscribe the cores (spinning OpenMP threads slow everything down)
THREADS = 1 if os.environ.get('PYTEST_XDIST_WORKER') else min(2, os.cpu_count() or 1)
torch.set_num_threads(THREADS)


def shared_data(*parts):
    """Path of a shared fixture, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'shared fixture {path} is absent (set DMT_SHARED_DATA to its folder)')
    return path


def tool_env(env=None):
    """The environment tools run in: this checkout first on the path, and a fixed thread
    count whatever the caller's shell says (CPU results depend on it)."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]),
                    OMP_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED='1', PYTHON=sys.executable)
    full_env.update(env or {})
    return full_env


def run_tool(args, cwd, timeout=900, env=None, check=True):
    """Run ``python <args>`` (a tool of this repo) in ``cwd``; return the CompletedProcess.

    On failure the tail of the output is in the assertion message.
    """
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=tool_env(env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc


def start_from_student(path):
    """--cfg-options that start a toy config's backbone (``init_cfg=None``: from scratch)
    from a student file in extract_student's format: the init_cfg is replaced, not merged."""
    return ['model.backbone.init_cfg._delete_=True', 'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={path}',
            'model.backbone.init_cfg.prefix=backbone.']


def student_kept_in(checkpoints, student):
    """The state dicts of the ``checkpoints`` (paths) of a probe run, after checking that each
    holds every tensor of ``student`` (``backbone.*`` keys) bit-identical."""
    from dmt_mm.checkpoint.loading import safe_torch_load
    saved = [safe_torch_load(str(path))['state_dict'] for path in checkpoints]
    for state_dict in saved:
        for key, value in student.items():
            torch.testing.assert_close(state_dict[key], value, rtol=0, atol=0, msg=key)
    return saved


def assert_optimizers_update_alike(optimizers, params, steps=1):
    """From the same start and with the same random gradients, ``steps`` steps of each
    optimizer leave ``params`` bit-identical to the first optimizer's, and moved."""
    start = [p.detach().clone() for p in params]
    grads = [torch.randn_like(p) for p in params]
    results = []
    for opt in optimizers:
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        for _ in range(steps):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        results.append([p.detach().clone() for p in params])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.equal(a, s) for a, s in zip(results[0], start))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='session')
def small_toy_world(tmp_path_factory):
    """A folder holding ``data/toy_world`` (default spec, as the toy configs expect);
    run tools with ``cwd`` set to it."""
    from dmt_mm.datasets import generate_toy_world
    root = tmp_path_factory.mktemp('toyroot')
    generate_toy_world(str(root / 'data' / 'toy_world'))
    return root


def rel(path):
    return osp.relpath(path, REPO)


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Tests that call mmengine's ``init_default_scope`` must not change the scope later
    tests build in (it is process-global): restore the scope instances after each test."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
