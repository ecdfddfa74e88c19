"""Shared test helpers: paths, the shared fixtures folder, running tools as subprocesses."""
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

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
                    OMP_NUM_THREADS='2', PYTHONUNBUFFERED='1', PYTHON=sys.executable)
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
