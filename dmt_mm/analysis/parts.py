"""A DMT training step against the sum of its parts, each timed alone on the same batch
(docs/performance.md): how much the whole costs beyond its pieces."""
import statistics
from typing import Dict

import torch

from .model_setup import input_size, synthetic_batch
from .timing import cleanup, read_log_vars, time_calls
from .variants import build_variant_optim_wrapper, variant_context

PARTS = ('preprocess', 'teachers', 'student', 'heads', 'optimizer')


def _time_parts(model, cfg, variant, data, device, rounds, warmup):
    """Per part (and the full step), the times of ``rounds`` rounds after ``warmup``; the
    optimizer wrapper and the cached tensors live only in here."""
    ow = build_variant_optim_wrapper(model, cfg, variant, device)
    model.train()
    # one real step tells which parameters receive gradients
    ow.zero_grad()
    with ow.optim_context(model):
        inputs = model.data_preprocessor(data, True)['inputs']
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        loss, _ = model.parse_losses(model.loss(x))
    ow.backward(loss)
    used = [p for p in model.parameters() if p.grad is not None]
    ow.zero_grad()
    del loss
    # what the parts consume: student outputs (as leaves) and teacher targets
    with ow.optim_context(model):
        feats = model.student_features(x)
        targets = model.target_generator(x, feats['grid'])
    keys = sorted(feats['layers'])
    grads = [torch.randn_like(t) * 1e-3 for t in [feats['seq']] +
             [feats['layers'][i] for i in keys]]
    cached = dict(feats, seq=feats['seq'].detach().requires_grad_(),
                  layers={i: t.detach().requires_grad_() for i, t in feats['layers'].items()})
    token_weight = cached['mask'] if model.mask_loss_on == 'masked' else None
    del feats

    def full():
        return model.train_step(data, ow)

    def preprocess():
        return model.data_preprocessor(data, True)

    def teachers():
        with ow.optim_context(model):
            return model.target_generator(x, cached['grid'])

    def student():
        with ow.optim_context(model):
            f = model.student_features(x)
        torch.autograd.backward([f['seq']] + [f['layers'][i] for i in keys], grads)

    def heads():
        with ow.optim_context(model):
            losses = model.head.loss(cached, targets, token_weight)
        ow.backward(model.parse_losses(losses)[0])

    def fill_grads():  # the optimizer step alone needs the gradients a step leaves
        ow.zero_grad()
        ow.backward(sum((p * 0).sum() for p in used))

    def optimizer():
        ow.step()
        ow.zero_grad()

    calls = dict(preprocess=preprocess, teachers=teachers, student=student, heads=heads,
                 optimizer=optimizer)
    times = {k: [] for k in ['full', *PARTS]}
    cpu_times = {k: [] for k in times}
    for r in range(rounds + warmup):
        for name in times:
            if name == 'optimizer':
                fill_grads()
            if name == 'full':
                t = time_calls(full, 1, 0, device, after=read_log_vars)
            else:
                t = time_calls(calls[name], 1, 0, device)
            ow.zero_grad()
            cached['seq'].grad = None
            for leaf in cached['layers'].values():
                leaf.grad = None
            if r >= warmup:
                times[name].append(t['median'])
                if 'cpu_median' in t:
                    cpu_times[name].append(t['cpu_median'])
    return times, cpu_times


def _summary(samples):
    med = {k: statistics.median(v) for k, v in samples.items()}
    low = {k: min(v) for k, v in samples.items()}
    total = sum(v for k, v in med.items() if k != 'full')
    total_min = sum(v for k, v in low.items() if k != 'full')
    return dict(median_s=med, min_s=low, sum_of_parts_s=total,
                overhead_ratio=med['full'] / total,
                overhead_ratio_min=low['full'] / total_min, samples_s=samples)


def measure_parts(model, cfg, variant, batch_size, device, rounds=5, warmup=2, size=None) -> Dict:
    """The full step versus the sum of its parts, each timed alone on the same batch:
    data preprocessor, teacher targets (``model.target_generator``: K teachers + target
    norms), student forward + backward (backward from fixed output gradients), the head's
    losses forward + backward (on cached student features and targets), optimizer step.
    Parts are interleaved with the full step round by round, so load changes on a shared
    machine hit both alike. Returns, for wall time (and on CPU also process CPU time),
    medians, minima and ``overhead_ratio`` = median full step / sum of the parts' medians
    (``overhead_ratio_min``: the same with minima, the least noisy estimate on a busy
    machine)."""
    size = size or input_size(model)
    data = synthetic_batch(batch_size, size, device)
    with variant_context(model, variant):
        times, cpu_times = _time_parts(model, cfg, variant, data, device, rounds, warmup)
    model.zero_grad(set_to_none=True)
    cleanup(device)
    out = dict(variant=variant['name'], batch_size=batch_size, img_size=list(size),
               rounds=rounds, wall=_summary(times))
    if all(cpu_times.values()):
        out['cpu'] = _summary(cpu_times)
    return out
