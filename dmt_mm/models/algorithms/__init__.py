from .dmt import DMT, resize_tokens

__all__ = ['DMT', 'resize_tokens']
