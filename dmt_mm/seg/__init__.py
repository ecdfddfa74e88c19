"""mmseg-side modules for the ADE20K benchmark (configs import ``dmt_mm.seg``): the dense
linear probe head. The SyncBN fallback DDP wrapper the UperNet configs name lives in
``dmt_mm.engine.sync_bn`` (configs import ``dmt_mm.engine`` too)."""
from dmt_mm.version_check import require_task_package

require_task_package('mmsegmentation')

from .linear_head import BNLinearHead  # noqa: E402  (after the package check)

__all__ = ['BNLinearHead']
