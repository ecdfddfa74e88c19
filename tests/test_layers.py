"""The package's layers stand in order (CONTRIBUTING.md, "Layout"): a module imports only
from its own package or from lower layers, at module level and inside functions alike, so
there are no import loops and the checkpoint tools never pull in models or runners."""
import ast
from pathlib import Path

from conftest import REPO

LAYERS = [
    {'console', 'version_check'},  # leaf helpers
    {'errors', '__init__'},  # one-line tool errors (quiet warnings via console); the root
    {'checkpoint', 'datasets', 'optim'},  # files, data, optimizer construction
    {'models'},  # mmpretrain modules: DMT, teachers, heads, probes
    {'det', 'seg'},  # task-side modules for mmdet / mmseg configs
    {'engine'},  # launch defaults, runner, hooks
    {'analysis', 'study'},  # measurement and the miniature study, used by tools only
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
PACKAGE = REPO / 'dmt_mm'


def _imported_packages(path: Path, root: Path = REPO):
    """(line, top-level dmt_mm package) of every dmt_mm import in ``path`` (under ``root``)."""
    package = path.relative_to(root).with_suffix('').parts[:-1]  # ('dmt_mm', 'models')
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[:len(package) - node.level + 1]
                names = ['.'.join(base + tuple(filter(None, [node.module])))]
                if node.module is None:  # `from .. import x`: x may be a package
                    names = [f'{names[0]}.{a.name}' for a in node.names]
            else:
                names = [node.module or '']
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'dmt_mm' and len(parts) > 1:
                yield node.lineno, parts[1]


def test_every_package_has_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.is_dir() and (p / '__init__.py').exists()) or p.suffix == '.py'}
    assert packages <= set(RANK), f'add {sorted(packages - set(RANK))} to LAYERS'


def test_no_import_goes_up_or_sideways():
    wrong = []
    for path in sorted(PACKAGE.rglob('*.py')):
        own = path.relative_to(PACKAGE).parts[0].removesuffix('.py')
        for line, target in _imported_packages(path):
            if target != own and RANK[target] >= RANK[own]:
                wrong.append(f'{path.relative_to(REPO)}:{line} ({own}, layer {RANK[own]}) '
                             f'imports dmt_mm.{target} (layer {RANK[target]})')
    assert not wrong, '\n'.join(wrong)


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    """The walker itself, on a file written for it: a function-level relative import two
    levels up, an absolute one and a sibling relative one are all found."""
    fake = tmp_path / 'dmt_mm' / 'models' / 'heads' / 'probe.py'
    fake.parent.mkdir(parents=True)
    fake.write_text('def f():\n    from ...engine import x\n    import dmt_mm.study.y\n'
                    'from ..utils import build_part\n')
    found = sorted(_imported_packages(fake, root=tmp_path))
    assert found == [(2, 'engine'), (3, 'study'), (4, 'models')]


def test_no_package_file_over_the_length_limit(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'check_file_lengths', REPO / 'tools' / 'misc' / 'check_file_lengths.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.too_long([PACKAGE], 400) == []
    (tmp_path / 'long.py').write_text('x = 1\n' * 401)
    (tmp_path / 'short.py').write_text('x = 1\n' * 400)
    assert tool.too_long([tmp_path], 400) == [(tmp_path / 'long.py', 401)]
