"""FLOPs of the DMT student, its heads and its frozen teachers, counted by a library.

Counter: PyTorch's ``torch.utils.flop_counter.FlopCounterMode``. It counts the matrix
products only -- ``mm``, ``addmm``, ``bmm``, ``baddbmm``, convolutions (and their backward)
and the fused attention kernels of CUDA -- at 2 FLOPs per multiply-add, the convention of
hardware peak figures and of MFU. Normalisation, softmax, GELU, residual adds and
interpolation are not counted (well under 1% of a ViT's FLOPs).

Two traps, handled here:

* on CPU, ``F.scaled_dot_product_attention`` dispatches to a fused kernel the counter has
  no formula for, so attention would silently count as 0. Counting runs under the MATH
  backend, where attention is two ``bmm``s: the count is then the same on every device
  (the CUDA flash / efficient formulas count the same two products);
* mmengine's ``FlopAnalyzer`` (fvcore's jit tracer) counts one FLOP per multiply-add and
  lists ``aten::scaled_dot_product_attention`` as unsupported (attention counted as 0).
  :func:`mmengine_flops` adds a handle for it; tests check both counters agree.

Training-step convention (:func:`dmt_flops`): ``train = 3 x forward(student + heads and
losses) + 1 x forward(teachers)``: backward costs about twice the forward for what is
trained; frozen teachers run forward only. ``train_counted`` (fwd + bwd counted op by op on
a real step) cross-checks it.
"""
from collections import Counter
from typing import Callable, Dict

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable, *args, backward: bool = False, **kwargs) -> Dict:
    """FLOPs of ``fn(*args, **kwargs)``: ``{'total': int, 'by_op': {op name: int}}``.

    ``backward=True`` also runs ``backward`` on the sum of the (first) tensor output, or on
    ``out['loss']`` / the sum of the loss entries of a dict output, and counts it.
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        with torch.set_grad_enabled(backward):
            out = fn(*args, **kwargs)
            if backward:
                _scalar(out).backward()
    by_op = Counter()
    for op, flops in counter.get_flop_counts().get('Global', {}).items():
        by_op[str(op).replace('aten.', '')] += int(flops)
    return dict(total=int(counter.get_total_flops()), by_op=dict(by_op))


def _scalar(out):
    if isinstance(out, dict):
        keys = [k for k in out if 'loss' in k] or list(out)
        return sum(out[k].float().sum() for k in keys)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.float().sum()


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _sdpa_handle(inputs, outputs):
    """mmengine jit handle for ``aten::scaled_dot_product_attention``: Q K^T and A V,
    in multiply-adds (mmengine's unit)."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(i) for i in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    return batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]


def mmengine_flops(module: torch.nn.Module, inputs) -> Dict:
    """mmengine ``FlopAnalyzer`` count (multiply-adds; attention via :func:`_sdpa_handle`):
    ``{'total': int, 'by_op': {...}}``. ``module(*inputs)`` must return tensors."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention', _sdpa_handle)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return dict(total=int(analyzer.total()), by_op=dict(analyzer.by_operator()))


def _dummy_images(model, batch: int, img_size, device):
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, h, w, generator=gen).to(device)


def teacher_flops(teacher, img_size, batch: int = 1) -> Dict:
    """What one frozen teacher is and costs per image when the student sees ``img_size``
    (int or (h, w)): the teacher runs at its own resolution (its ``img_size``) and patch
    size, so a SAM teacher at 1024 px costs the same whatever the student's input.

    Returns ``type``, ``family`` (``TimmTeacher``'s, or the checkpoint format of a plain
    ViT teacher), ``resolution`` (h, w), ``patch``, ``grid``, ``width`` (of its targets),
    ``blocks``, ``params`` and ``flops`` (forward, per image)."""
    import copy
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    # counted on a copy on the 'meta' device: shapes only, no arithmetic (SAM-B at 1024 px
    # takes minutes on a CPU, counting it on meta a second)
    meta = copy.deepcopy(teacher).to('meta')
    flops = count_flops(meta, torch.empty(batch, 3, h, w, device='meta'))['total'] / batch
    side = teacher.img_size
    resolution = (side, side) if side else (h, w)
    patch = teacher.patch_size
    return dict(type=type(teacher).__name__,
                family=getattr(teacher, 'family', getattr(teacher, 'checkpoint_format', None)),
                resolution=resolution, patch=patch,
                grid=(resolution[0] // patch, resolution[1] // patch), width=teacher.embed_dims,
                blocks=teacher.num_layers, params=num_params(teacher.backbone), flops=flops)


def dmt_flops(model, img_size, device=None, batch: int = 2, counted_train: bool = True) -> Dict:
    """Per-image FLOPs of a DMT algorithm at ``img_size`` (int or (h, w)).

    Returns ``teachers`` {name: forward FLOPs}, ``teachers_total``, ``teacher_targets``
    (the target generator: teachers, resizing, target norms), ``student`` (forward, incl. the
    MAE decoder when masking), ``heads`` (the distillation head: TFD heads, SFD adaptors,
    losses; forward), ``forward`` (all), ``train`` (the 3x / 1x convention, module
    docstring), ``train_counted`` (forward + backward counted on a real step, or None) and
    params (``params_student``, ``params_heads``, ``params_teachers``).
    """
    device = device or next(model.parameters()).device
    x = _dummy_images(model, batch, img_size, device)
    was_training = model.training
    model.eval()  # same FLOPs; running target statistics stay untouched
    try:
        grid = model._student_grid(x)
        generator = model.target_generator
        teachers = {}
        for teacher in generator.teachers:
            teachers[teacher.name] = count_flops(teacher, x)['total'] / batch
        student = count_flops(model.student_features, x)['total'] / batch
        total = count_flops(model.loss, x)['total'] / batch
        t_targets = count_flops(generator, x, grid)['total'] / batch
        train_counted = None
        if counted_train:
            train_counted = count_flops(model.loss, x, backward=True)['total'] / batch
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    heads = total - student - t_targets
    teachers_total = sum(teachers.values())
    params_teachers = {t.name: num_params(t.backbone) for t in model.target_generator.teachers}
    params_student = num_params(model.backbone) + (
        num_params(model.neck) if model.neck is not None else 0)
    return dict(
        img_size=img_size, teachers=teachers, teachers_total=teachers_total,
        teacher_targets=t_targets, student=student, heads=heads, forward=total,
        train=3 * (student + heads) + t_targets, train_counted=train_counted,
        params_student=params_student,
        params_heads=num_params(model) - params_student,
        params_teachers=params_teachers,
        convention='FLOPs = 2 x multiply-adds of matmuls/convs/attention (torch FlopCounterMode'
                   ', SDPA counted via the math backend); train = 3 x (student + heads) + '
                   '1 x teachers forward')

