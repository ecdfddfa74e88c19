"""Toy-world data for CPU runs. The scope-specific dataset classes live in their own modules
(``toy_det``, ``toy_seg``, ``toy_cls``) so a config imports only the OpenMMLab package it uses."""
from .prepare import ensure_toy_world
from .toy_world import CLASSES, FACTORS, STUDY_WORLD, ToyWorldSpec, generate_toy_world

__all__ = ['CLASSES', 'FACTORS', 'STUDY_WORLD', 'ToyWorldSpec', 'generate_toy_world',
           'ensure_toy_world']
from .robust_loading import CheckLabelRange, LoadImageOrSkip  # noqa: E402

__all__ += ['LoadImageOrSkip', 'CheckLabelRange']
