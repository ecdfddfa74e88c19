from .multi_teacher import MultiTeacherTargetGenerator, resize_tokens

__all__ = ['MultiTeacherTargetGenerator', 'resize_tokens']
