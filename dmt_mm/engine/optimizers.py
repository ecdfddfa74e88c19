"""Layer-wise lr decay for any model built on the DMT student backbone.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *top-level* model for
``get_layer_depth``, which classifiers have but mmdet detectors and mmseg segmentors do not
(and mmdet's own decay constructor knows ConvNeXt only). This subclass falls back to the
backbone's ``get_layer_depth`` with the ``backbone.`` prefix: every non-backbone parameter
(neck, heads) then gets the full lr, block ``i`` gets ``decay ** (num_layers - i)`` and the
patch embedding / position embedding ``decay ** (num_layers + 1)``.
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor


@MMENGINE_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """Registered in mmengine's root registry, so mmdet, mmseg and mmpretrain configs can
    all use ``constructor='LayerDecayOptimWrapperConstructor'`` without a scope prefix."""

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if backbone is None or not hasattr(backbone, 'get_layer_depth'):
                raise NotImplementedError(
                    f'layer-wise lr decay needs {type(module).__name__} or its backbone to '
                    'define get_layer_depth (the DMT student, DMTViT, does)')

            def get_layer_depth(name):
                return backbone.get_layer_depth(name, prefix='backbone.')
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth,
                           **kwargs)
