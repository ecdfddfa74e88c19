from .base import BaseFrozenTeacher
from .frozen_vit_teacher import FrozenViTTeacher
from .timm_teacher import TEACHER_FAMILIES, TimmEncoder, TimmTeacher

__all__ = ['BaseFrozenTeacher', 'FrozenViTTeacher', 'TimmTeacher', 'TimmEncoder',
           'TEACHER_FAMILIES']
