"""Layer-wise lr decay for any model built on the DMT student backbone.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *top-level* model for
``get_layer_depth``, which classifiers have but mmdet detectors and mmseg segmentors do not
(and mmdet's own decay constructor knows ConvNeXt only). This subclass falls back to the
backbone's ``get_layer_depth`` with the ``backbone.`` prefix. With ``L`` blocks and decay
``d`` (the BEiT / ViTDet convention):

* block ``i`` (0-based) gets ``lr * d ** (L - i)``;
* patch embedding, position embedding and CLS token get ``lr * d ** (L + 1)``;
* everything else (final norm, neck, heads) gets the full ``lr``.

It also rejects ``paramwise_cfg`` keys it would silently ignore (mmdet's ``decay_rate`` /
``decay_type`` / ``num_layers``, a ``lr_mult`` in ``custom_keys``).
"""
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor

KNOWN_KEYS = {'layer_decay_rate', 'bias_decay_mult', 'norm_decay_mult', 'flat_decay_mult',
              'custom_keys'}


@MMENGINE_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """Registered in mmengine's root registry, so mmdet, mmseg and mmpretrain configs can
    all use ``constructor='LayerDecayOptimWrapperConstructor'`` without a scope prefix.

    ``paramwise_cfg``: ``layer_decay_rate`` (required), ``bias_decay_mult``,
    ``norm_decay_mult``, ``flat_decay_mult``, ``custom_keys`` (``decay_mult`` only).
    """

    def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
        paramwise_cfg = paramwise_cfg or {}
        unknown = set(paramwise_cfg) - KNOWN_KEYS
        if unknown or 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError(
                f'LayerDecayOptimWrapperConstructor: paramwise_cfg needs `layer_decay_rate` '
                f'and accepts only {sorted(KNOWN_KEYS)}; got {sorted(paramwise_cfg)}. Configs '
                'inheriting mmdet bases must replace their paramwise_cfg with `_delete_=True`.')
        for key, custom in paramwise_cfg.get('custom_keys', {}).items():
            if set(custom) - {'decay_mult'}:
                raise ValueError(f'custom_keys[{key!r}] = {custom}: with layer-wise decay only '
                                 '`decay_mult` is supported (the lr comes from the depth)')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

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
