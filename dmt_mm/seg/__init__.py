"""mmseg-side modules for the ADE20K benchmark (configs import ``dmt_mm.seg``): the dense
linear probe head.

The SyncBN fallback lives in ``dmt_mm.engine.sync_bn`` (it needs only torch and mmengine
and also serves CPU-distributed detection runs); it is re-exported here."""
from dmt_mm.engine.sync_bn import SyncBNFallbackDDP, convert_sync_bn_if_needed
from dmt_mm.version_check import require_task_package

require_task_package('mmsegmentation')

from .linear_head import BNLinearHead  # noqa: E402  (after the package check)

__all__ = ['SyncBNFallbackDDP', 'convert_sync_bn_if_needed', 'BNLinearHead']
