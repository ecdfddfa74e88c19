"""mmdet-only modules (registered in mmdet's registry)."""
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN']
