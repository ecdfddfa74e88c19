"""Optimizer construction for DMT pretraining.

mmengine's ``DefaultOptimWrapperConstructor`` makes one param group per tensor as soon as a
``paramwise_cfg`` is set (about 180 groups for ViT-S + heads), although only two distinct
settings exist (with and without weight decay). Fused and foreach AdamW launch their
kernels per group, and ``torch.compile`` of the train step breaks its graph and guards per
group; :class:`MergedGroupsOptimWrapperConstructor` builds the same optimizer with one group
per distinct setting, which updates every parameter exactly as before. Its groups are
plain dicts: mmengine's are ``ConfigDict`` s (the config machinery converts them), which
``torch.compile`` cannot trace through the optimizer step (an internal dynamo error).
"""
from typing import Dict, List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[Dict]) -> List[Dict]:
    """Param groups with one group per distinct set of settings (everything but ``params``),
    in the order of first appearance; parameters keep their order within a setting."""
    merged = {}
    for group in groups:
        key = repr(sorted((k, v) for k, v in group.items() if k != 'params'))
        merged.setdefault(key, dict(group, params=[]))['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same ``paramwise_cfg``) whose param groups are
    merged by setting. Registered in mmengine's root registry: any scope can use it."""

    def __call__(self, model):
        wrapper = super().__call__(model)
        optimizer = wrapper.optimizer
        optimizer.param_groups = [dict(group) for group in optimizer.param_groups]
        return wrapper

    def add_params(self, params, module, prefix='', is_dcn_module=None):
        if prefix:  # a recursive call for a child module: per tensor, as mmengine does
            return super().add_params(params, module, prefix, is_dcn_module)
        per_tensor = []
        super().add_params(per_tensor, module, prefix, is_dcn_module)
        params.extend(merge_param_groups(per_tensor))


__all__ = ['MergedGroupsOptimWrapperConstructor', 'merge_param_groups']
