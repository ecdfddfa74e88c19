"""mmdet-only modules (registered in mmdet's registry)."""
from dmt_mm.version_check import require_task_package

require_task_package('mmdet')

from .simple_fpn import SimpleFPN  # noqa: E402

__all__ = ['SimpleFPN']
