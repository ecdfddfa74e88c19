from .safe_load import UntrustedCheckpointError, safe_torch_load

__all__ = ['safe_torch_load', 'UntrustedCheckpointError']
