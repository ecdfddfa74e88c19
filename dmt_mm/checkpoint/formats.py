"""Official checkpoint layouts, as published, in one import.

The converters live by concern: :mod:`.vit_layouts` (MAE, MoCo v3, iBOT, DINO and mmpretrain
ViT files -> mmpretrain ``VisionTransformer``), :mod:`.teacher_layouts` (DINOv2, CLIP /
OpenCLIP / SigLIP and SAM files -> timm models), :mod:`.backbone` (a bare ViT backbone: its
architecture, its check, its file) and :mod:`.format_errors` (the error they all raise).
This module gathers their public names, so that configs, tools and user code can keep
importing them from ``dmt_mm.checkpoint.formats``.
"""
from .backbone import describe_vit, infer_vit_arch, save_backbone_checkpoint, validate_backbone
from .format_errors import CheckpointFormatError, summarise_keys
from .teacher_layouts import (
    LAYOUT_NAMES,
    TEACHER_FAMILY_LAYOUTS,
    TEACHER_LAYOUTS,
    TeacherCheckpoint,
    check_teacher_state_dict,
    convert_teacher_state_dict,
    dinov2_resize_pos_embed,
    identify_teacher_layout,
    load_teacher_weights,
    read_teacher_file,
)
from .vit_layouts import (
    FORMATS,
    ViTCheckpoint,
    check_vit_state_dict,
    convert_vit_state_dict,
    load_vit_weights,
)

__all__ = ['FORMATS', 'ViTCheckpoint', 'check_vit_state_dict', 'convert_vit_state_dict',
           'load_vit_weights', 'describe_vit', 'infer_vit_arch', 'save_backbone_checkpoint',
           'validate_backbone', 'CheckpointFormatError', 'summarise_keys', 'LAYOUT_NAMES',
           'TEACHER_FAMILY_LAYOUTS', 'TEACHER_LAYOUTS', 'TeacherCheckpoint',
           'check_teacher_state_dict', 'convert_teacher_state_dict', 'dinov2_resize_pos_embed',
           'identify_teacher_layout', 'load_teacher_weights', 'read_teacher_file']
