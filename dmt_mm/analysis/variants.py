"""Throughput of DMT pretraining steps, side by side with a naive peer (docs/performance.md).

What is timed is ``model.train_step(batch, optim_wrapper)`` -- data preprocessor, student,
K frozen teachers, heads, losses, backward and the optimizer step through the config's
optim wrapper -- on a batch already on the device, followed by reading the logged loss
values as the runner does (one host sync per step). Warm-up steps are excluded; GPU steps
are timed with CUDA events, CPU steps with ``perf_counter``.

Step variants (:data:`VARIANTS`) change one thing at a time on the same model:

* ``amp``: ``'config'`` (the config's optim wrapper), ``'bf16'`` (bf16 autocast, no loss
  scaler: bf16 has the fp32 exponent range), ``None`` (fp32);
* ``optimizer``: ``'fused'`` / ``'foreach'`` / ``'forloop'`` AdamW implementation,
  ``'default'`` (no flag: torch picks foreach on CUDA), ``'config'``;
* ``attention``: ``'auto'`` (``F.scaled_dot_product_attention`` picks flash / efficient /
  the CPU flash kernel) or ``'math'`` (the unfused reference: Q K^T, softmax, A V);
* ``teachers``: ``'frozen'`` (as the model runs them: ``no_grad``, bf16 autocast on CUDA),
  ``'fp32'`` (``no_grad``, fp32), ``'naive'`` (fp32, autograd on: parameters require grad,
  no ``no_grad``; they are not in the optimizer, but the loss backpropagates into them as
  in a straightforward implementation that forgets to freeze them);
* ``compile``: ``torch.compile`` of the student and teacher ``forward_tokens`` and of the
  heads;
* ``merge_groups``: merge the optimizer's param groups that share every setting (mmengine's
  constructor makes one group per tensor once ``paramwise_cfg`` is set, so a fused / foreach
  AdamW launches its kernels once per tensor).

AMP and fused kernels that need CUDA fall back to fp32 / what the CPU has; every result
records the settings actually used.
"""
import copy
from contextlib import ExitStack, contextmanager
from typing import Dict

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .model_setup import quiet_mmengine_log

VARIANTS = {
    'config': dict(amp='config', optimizer='config', attention='auto', teachers='frozen'),
    'optimized': dict(amp='bf16', optimizer='fused', attention='auto', teachers='frozen'),
    'optimized-compile': dict(amp='bf16', optimizer='fused', attention='auto',
                              teachers='frozen', compile=True),
    # a candidate: one AdamW param group per distinct setting instead of one per tensor
    'optimized-merged-groups': dict(amp='bf16', optimizer='fused', attention='auto',
                                    teachers='frozen', merge_groups=True),
    # ablations: the optimized step minus one optimisation
    'optimized-foreach-adamw': dict(amp='bf16', optimizer='foreach', attention='auto',
                                    teachers='frozen'),
    'optimized-math-attention': dict(amp='bf16', optimizer='fused', attention='math',
                                     teachers='frozen'),
    'optimized-fp32-teachers': dict(amp='bf16', optimizer='fused', attention='auto',
                                    teachers='fp32'),
    'optimized-fp32': dict(amp=None, optimizer='fused', attention='auto', teachers='fp32'),
    # peers
    'naive-nograd': dict(amp=None, optimizer='default', attention='math', teachers='fp32'),
    'naive': dict(amp=None, optimizer='default', attention='math', teachers='naive'),
}
ABLATIONS = ('optimized-foreach-adamw', 'optimized-math-attention', 'optimized-fp32-teachers',
             'optimized-fp32')
PEERS = ('naive', 'naive-nograd')


def resolve_variant(name_or_dict, device) -> Dict:
    """Settings of a variant, with what the device cannot do turned off (and said so)."""
    v = dict(VARIANTS[name_or_dict]) if isinstance(name_or_dict, str) else dict(name_or_dict)
    v.setdefault('compile', False)
    v.setdefault('merge_groups', False)
    v['name'] = name_or_dict if isinstance(name_or_dict, str) else v.get('name', 'custom')
    notes = []
    cuda = torch.device(device).type == 'cuda'
    if v['amp'] == 'bf16' and not cuda:
        v['amp'], _ = None, notes.append('bf16 AMP needs CUDA here: fp32')
    if v['teachers'] == 'frozen' and not cuda:
        notes.append('teachers run fp32 on CPU (their bf16 autocast is CUDA-only)')
    v['notes'] = notes
    return v


def build_variant_optim_wrapper(model, cfg, variant, device):
    from mmengine.optim import build_optim_wrapper
    with quiet_mmengine_log():  # the constructor logs every parameter's options
        ow = build_optim_wrapper(model, optim_wrapper_cfg(cfg, variant, device))
    if variant.get('merge_groups'):
        ow.optimizer = merge_param_groups(ow.optimizer)
    return ow


def merge_param_groups(optimizer):
    """The same optimizer with one param group per distinct set of group settings."""
    from dmt_mm.optim import merge_param_groups as merge
    return type(optimizer)(merge(optimizer.param_groups))


def optim_wrapper_cfg(cfg, variant, device):
    """The config's optim wrapper with the variant's AMP and AdamW implementation."""
    ow = copy.deepcopy(cfg.optim_wrapper.to_dict() if hasattr(cfg.optim_wrapper, 'to_dict')
                       else dict(cfg.optim_wrapper))
    cuda = torch.device(device).type == 'cuda'
    notes = variant['notes']
    amp = variant['amp']
    if amp == 'config' and ow.get('type') == 'AmpOptimWrapper' and not cuda:
        amp, note = None, 'config AmpOptimWrapper needs CUDA: fp32 OptimWrapper'
        if note not in notes:
            notes.append(note)
    if amp is None:
        ow['type'] = 'OptimWrapper'
        ow.pop('loss_scale', None)
        ow.pop('dtype', None)
    elif amp == 'bf16':
        ow.update(type='AmpOptimWrapper', dtype='bfloat16', loss_scale=dict(enabled=False))
    opt = ow['optimizer']
    impl = variant['optimizer']
    if impl != 'config':
        opt.pop('fused', None)
        opt.pop('foreach', None)
        if impl == 'fused':
            opt['fused'] = True
        elif impl == 'foreach':
            opt['foreach'] = True
        elif impl == 'forloop':
            opt['foreach'] = False
        elif impl != 'default':
            raise ValueError(f'unknown optimizer implementation {impl!r}')
    return ow


@contextmanager
def _autocast_disabled():
    """Within it, every ``torch.autocast(...)`` is created disabled (the teachers' own bf16
    autocast included), so the code inside runs in fp32."""
    original = torch.autocast

    class _Disabled(original):
        def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
            super().__init__(device_type, dtype=dtype, enabled=False, cache_enabled=cache_enabled)

    torch.autocast = _Disabled
    try:
        yield
    finally:
        torch.autocast = original


def _teacher_forward(teacher, mode):
    cls_forward = type(teacher).forward
    fn = getattr(cls_forward, '__wrapped__', cls_forward) if mode == 'naive' else cls_forward

    def forward(inputs):
        with _autocast_disabled():
            return fn(teacher, inputs)
    return forward


@contextmanager
def variant_context(model, variant):
    """Apply a variant's teacher mode, attention backend and compilation; undo on exit."""
    teachers = list(model.target_generator.teachers)
    heads = [*getattr(model.head, 'tfd_heads', {}).values(),
             *getattr(model.head, 'sfd_adaptors', {}).values()]
    mode = variant['teachers']
    compiled = []
    with ExitStack() as stack:
        if variant['attention'] == 'math':
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        try:
            if mode in ('fp32', 'naive'):
                for t in teachers:
                    t.forward = _teacher_forward(t, mode)
                    if mode == 'naive':
                        t.backbone.requires_grad_(True)
            elif mode != 'frozen':
                raise ValueError(f'unknown teacher mode {mode!r}')
            if variant.get('compile'):
                for vit in [model.backbone] + [t.backbone for t in teachers]:
                    # dynamic=False: the student and the teachers share forward_tokens'
                    # code with other shapes; automatic dynamic shapes would then compile
                    # shape-generic (slower) kernels instead of one graph per shape
                    vit.forward_tokens = torch.compile(vit.forward_tokens, dynamic=False)
                    compiled.append(vit)
                for head in heads:
                    head.compile(dynamic=False)
            yield
        finally:
            for t in teachers:
                t.__dict__.pop('forward', None)
                t.backbone.requires_grad_(False)
                t.backbone.zero_grad(set_to_none=True)
            for vit in compiled:
                vit.__dict__.pop('forward_tokens', None)
            for head in heads:
                head._compiled_call_impl = None
