from .dmt_vit import ARCH_ALIASES, DMTViT

__all__ = ['DMTViT', 'ARCH_ALIASES']
