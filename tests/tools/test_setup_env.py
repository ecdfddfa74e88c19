"""The set-up's Python check (refuse at once, naming the Pythons that work) and the mmcv
2.1.0 sdist patch that lets its setup.py run on Python 3.13."""
import glob
import os
import shutil
import subprocess
import sys

import pytest
from conftest import TOOLS

# mmcv 2.1.0 setup.py, get_version() verbatim (Apache-2.0, open-mmlab/mmcv), plus a caller.
MMCV_SETUP_PY = '''\
def get_version():
    version_file = 'mmcv/version.py'
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'))
    return locals()['__version__']


print(get_version())
'''


def fake_python(tmp_path, version):
    """An executable that answers like a Python of ``version`` (enough for the check)."""
    path = tmp_path / f'python{version}'
    path.write_text(f'#!/bin/sh\ncase "$1" in -V) echo "Python {version}.0";; '
                    f'*) echo "{version}";; esac\n')
    path.chmod(0o755)
    return path


def run_setup_check(tmp_path, python):
    env = dict(os.environ, DMT_BASE_PYTHON=str(python), DMT_VENV=str(tmp_path / 'venv'),
               DMT_CHECK_PYTHON_ONLY='1')
    env.pop('DMT_PYTHON', None)
    return subprocess.run(['bash', str(TOOLS / 'setup_env.sh')], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)


@pytest.mark.parametrize('version', ['3.8', '3.9', '3.14'])
def test_unsupported_python_is_refused_at_once(tmp_path, version):
    proc = run_setup_check(tmp_path, fake_python(tmp_path, version))
    assert proc.returncode != 0
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert f'Python {version} is not supported' in lines[0]
    assert '3.10 3.11 3.12 3.13' in lines[0] and 'DMT_BASE_PYTHON' in lines[0]
    assert not (tmp_path / 'venv').exists()  # nothing was created


@pytest.mark.parametrize('version', ['3.10', '3.13'])
def test_supported_python_passes_the_check(tmp_path, version):
    proc = run_setup_check(tmp_path, fake_python(tmp_path, version))
    assert proc.returncode == 0, proc.stdout
    assert f'Python {version}.0 is supported' in proc.stdout


def find_python313():
    """A working Python 3.13 (pyenv shims may name one that does not run), or skip."""
    candidates = [shutil.which('python3.13'),
                  *sorted(glob.glob(os.path.expanduser('~/.pyenv/versions/3.13*/bin/python3.13')))]
    for path in filter(None, candidates):
        if subprocess.run([path, '-c', 'import sys; assert sys.version_info[:2] == (3, 13)'],
                          capture_output=True).returncode == 0:
            return path
    pytest.skip('no Python 3.13 interpreter on this machine')


def test_mmcv_get_version_fails_on_313_unpatched_and_works_patched(tmp_path):
    python313 = find_python313()
    (tmp_path / 'mmcv').mkdir()
    (tmp_path / 'mmcv' / 'version.py').write_text("__version__ = '2.1.0'\n")
    (tmp_path / 'setup.py').write_text(MMCV_SETUP_PY)

    def run_get_version():
        return subprocess.run([python313, 'setup.py'], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    before = run_get_version()
    assert before.returncode != 0 and "KeyError: '__version__'" in before.stdout
    patch = [sys.executable, str(TOOLS / 'patch_mmcv_sdist.py'), str(tmp_path)]
    assert 'patched' in subprocess.run(patch, check=True, text=True,
                                       stdout=subprocess.PIPE).stdout
    after = run_get_version()
    assert after.returncode == 0 and after.stdout.strip() == '2.1.0', after.stdout
    # idempotent: a second run changes nothing
    assert 'already patched' in subprocess.run(patch, check=True, text=True,
                                               stdout=subprocess.PIPE).stdout


def test_patch_refuses_an_unknown_setup_py(tmp_path):
    (tmp_path / 'setup.py').write_text('print(1)\n')
    proc = subprocess.run([sys.executable, str(TOOLS / 'patch_mmcv_sdist.py'), str(tmp_path)],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode != 0 and 'unexpected form' in proc.stdout
