"""dmt_mm: DMT (Comprehensive Distillation with Multiple Self-supervised Teachers) on OpenMMLab.

Importing the package checks that the installed OpenMMLab stack is the tested one and fails
with the exact fix otherwise. Registration of models happens in the subpackages, which
configs load through ``custom_imports`` (see ``dmt_mm.models``, ``dmt_mm.det``).
"""
from .version_check import StackVersionError, check_versions

__version__ = '0.1.0'

_STACK_VERSIONS = check_versions()


def stack_versions():
    """Installed versions of the stack, as checked at import."""
    return dict(_STACK_VERSIONS)


__all__ = ['__version__', 'stack_versions', 'StackVersionError']
