"""Fail fast, with the exact fix, when the installed OpenMMLab stack is off.

mmdet 3.3 / mmseg 1.2.2 assert on mmcv at import with a terse message, mmpretrain needs
torchvision, and an mmcv built without its compiled ops only fails deep inside mmdet. This
module checks all of it up front so the first error a user sees says what to install.
"""
from importlib import metadata

# name -> (minimum inclusive, maximum exclusive); versions tested together in this project.
REQUIRED = {
    'torch': ('2.0.0', '2.15.0'),
    'mmengine': ('0.10.0', '0.11.0'),
    'mmcv': ('2.1.0', '2.2.0'),
    'mmdet': ('3.3.0', '3.4.0'),
    'mmsegmentation': ('1.2.2', '1.3.0'),
    'mmpretrain': ('1.2.0', '1.3.0'),
    'numpy': ('1.24.0', '2.4.0'),
}
# Needed only by the detection / segmentation parts (dmt_mm.det, dmt_mm.seg and their
# configs): absent is fine for pretraining-only installs, present must be in range.
TASK_PACKAGES = ('mmdet', 'mmsegmentation')
# Alternative distributions that provide the same import package.
ALIASES = {'mmcv': ('mmcv', 'mmcv-full', 'mmcv-lite')}
FIX = ('Run `bash tools/setup_env.sh` (it installs the pinned stack into .venv), or install '
       'the versions of requirements/mminstall.txt by hand; mmcv must be built with ops '
       '(MMCV_WITH_OPS=1, see README "Installation").')


class StackVersionError(ImportError):
    """The installed packages do not form the tested OpenMMLab stack."""


def _parse(version):
    parts = []
    for piece in version.split('+')[0].split('.')[:3]:
        digits = ''.join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
        if not piece.isdigit():  # '0rc4' etc.: stop after the first non-numeric part
            break
    return tuple(parts + [0] * (3 - len(parts)))


def installed_version(dist):
    for name in ALIASES.get(dist, (dist,)):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None


def check_versions(required=None, version_of=installed_version):
    """Return the installed versions; raise StackVersionError listing every problem."""
    required = REQUIRED if required is None else required
    found, problems = {}, []
    for dist, (low, high) in required.items():
        version = version_of(dist)
        found[dist] = version
        if version is None and dist in TASK_PACKAGES:
            continue
        if version is None:
            problems.append(f'{dist} is not installed (need >={low},<{high})')
        elif not _parse(low) <= _parse(version) < _parse(high):
            problems.append(f'{dist} {version} is installed, need >={low},<{high}')
    if problems:
        raise StackVersionError('dmt_mm: the OpenMMLab stack is not the tested one:\n  - ' +
                                '\n  - '.join(problems) + '\n' + FIX)
    return found


def require_task_package(dist):
    """Called by the det / seg subpackages: their OpenMMLab package must be installed."""
    low, high = REQUIRED[dist]
    if installed_version(dist) is None:
        raise StackVersionError(f'dmt_mm: {dist} is not installed; the detection/segmentation '
                                f'parts need {dist}>={low},<{high}. ' + FIX)
    check_mmcv_ops()


def check_mmcv_ops():
    """mmdet/mmseg need mmcv's compiled ops; mmcv-lite or an isolated build lacks them."""
    try:
        import mmcv._ext  # noqa: F401
    except ImportError as exc:
        raise StackVersionError(
            f'dmt_mm: mmcv is installed without its compiled ops ({exc}). mmdet and mmseg '
            'need them. ' + FIX + ' Building with pip\'s build isolation silently drops '
            'the ops: use --no-build-isolation.') from exc
