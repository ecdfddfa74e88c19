from .frozen_vit_teacher import FrozenViTTeacher

__all__ = ['FrozenViTTeacher']
