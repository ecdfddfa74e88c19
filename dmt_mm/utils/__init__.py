# checkpoint reading moved to dmt_mm.checkpoint; these names stay importable from here
from dmt_mm.checkpoint import UntrustedCheckpointError, safe_torch_load

__all__ = ['safe_torch_load', 'UntrustedCheckpointError']
