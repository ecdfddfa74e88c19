"""How the frozen teachers run: the target generator's ``teacher_execution`` option.

The K frozen ViT-B teachers are most of a DMT step's FLOPs (105 of 148 GFLOPs per image for
a ViT-S student and three ViT-B/16 teachers). They already run under ``no_grad`` in bf16
autocast with fused attention (mmpretrain's ``MultiheadAttention`` and DMTViT's windowed
blocks call ``F.scaled_dot_product_attention``). This option chooses how their forward is
executed on top of that:

* ``mode='eager'`` (default): as written;
* ``mode='compile'``: ``torch.compile`` of each teacher's ``forward_tokens`` (one static
  graph per input shape: fused norms / GELU / residuals, no Python per block);
  ``freezing=True`` also lets inductor fold the frozen weights into the graph as constants
  (the bf16 weight casts of autocast then happen once, at compile time);
* ``mode='cudagraphs'``: as ``compile``, captured as CUDA graphs for the fixed batch shape
  (``mode='reduce-overhead'``): one launch per teacher instead of hundreds of kernels;
  the outputs are copied out of the graph's memory pool;
* ``fp8=True``: the teachers' linear layers in FP8 (torchao float8 inference:
  dynamic per-row activation scales, per-row weight scales), CUDA GPUs with FP8 tensor cores
  only (compute capability >= 8.9: H100, H200, L40S, ...). An explicit choice: the targets
  change; ``tools/analysis_tools/gpu_benchmark.sh`` measures their cosine similarity to the
  bf16 targets per teacher and the speed-up (BENCHMARKS.md).

The teachers' weights are prepared at the first forward, when they are loaded and on their
device. When the whole train step is compiled (the DMT configs' ``compile`` option) the
teachers are traced into that graph and ``mode`` adds nothing; ``fp8`` still applies.
"""
from typing import Optional

import torch

EXECUTION_MODES = ('eager', 'compile', 'cudagraphs')
EXECUTION_KEYS = ('mode', 'fp8', 'freezing')


class TeacherExecution:
    """Execution settings shared by every teacher of a target generator.

    Args:
        mode: ``'eager'`` | ``'compile'`` | ``'cudagraphs'`` (see the module docstring).
        fp8: run the teachers' linear layers in FP8 through torchao (CUDA, sm_89+).
        freezing: with ``mode='compile'`` / ``'cudagraphs'``, fold the frozen weights into
            the compiled graph (inductor's ``freezing``).
    """

    def __init__(self, mode: str = 'eager', fp8: bool = False, freezing: bool = False):
        if mode not in EXECUTION_MODES:
            raise ValueError(f'target_generator.teacher_execution.mode {mode!r} is not one of '
                             f'{EXECUTION_MODES}')
        if freezing and mode == 'eager':
            raise ValueError("target_generator.teacher_execution.freezing needs mode='compile' "
                             "or 'cudagraphs' (it is an inductor option)")
        self.mode = mode
        self.fp8 = bool(fp8)
        self.freezing = bool(freezing)

    @classmethod
    def build(cls, cfg) -> 'TeacherExecution':
        """From a config dict (unknown keys are an error), a mode string or None."""
        if cfg is None:
            return cls()
        if isinstance(cfg, str):
            return cls(mode=cfg)
        cfg = dict(cfg)
        from ..utils import check_keys
        check_keys(cfg, EXECUTION_KEYS, 'target_generator.teacher_execution')
        return cls(**cfg)

    @property
    def is_default(self) -> bool:
        return self.mode == 'eager' and not self.fp8

    def apply(self, teachers) -> None:
        """Route every teacher's ``forward_tokens`` through a runner of these settings."""
        if self.is_default:
            return
        for teacher in teachers:
            vit = teacher.backbone
            vit.forward_tokens = _TeacherRunner(vit, self)

    def __repr__(self):
        return f'TeacherExecution(mode={self.mode!r}, fp8={self.fp8}, freezing={self.freezing})'


def check_fp8_device(device: torch.device) -> None:
    """One clear error when FP8 teachers cannot run here."""
    if device.type != 'cuda':
        raise RuntimeError(
            f'target_generator.teacher_execution.fp8=True needs a CUDA GPU with FP8 tensor '
            f'cores (compute capability >= 8.9: H100, H200, L40S, ...); the teachers run on '
            f'{device.type}. Remove teacher_execution.fp8 to run them in bf16.')
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise RuntimeError(
            f'target_generator.teacher_execution.fp8=True needs FP8 tensor cores (compute '
            f'capability >= 8.9); {torch.cuda.get_device_name(device)} has {major}.{minor}. '
            'Remove teacher_execution.fp8 to run the teachers in bf16.')


def convert_linears_to_fp8(vit: torch.nn.Module) -> int:
    """Swap the weights of ``vit``'s linear layers for torchao float8 inference weights
    (bf16 compute dtype, dynamic per-row activation and per-row weight scales); returns how
    many layers were converted."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise RuntimeError(
            'target_generator.teacher_execution.fp8=True needs torchao (pip install torchao, '
            f'the release made for torch {torch.__version__.split("+")[0]}): {exc}') from exc
    linears = sum(isinstance(m, torch.nn.Linear) for m in vit.modules())
    vit.to(torch.bfloat16)
    quantize_(vit, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    return linears


class _TeacherRunner:
    """``forward_tokens`` of one frozen teacher ViT under a :class:`TeacherExecution`."""

    def __init__(self, vit, execution: TeacherExecution):
        self.eager = type(vit).forward_tokens.__get__(vit)
        self.vit_ref = [vit]  # a list: no reference cycle through the module's __dict__
        self.execution = execution
        self.fn = None

    def _prepare(self, device):
        ex, vit = self.execution, self.vit_ref[0]
        if ex.fp8:
            check_fp8_device(device)
            convert_linears_to_fp8(vit)
        self.fn = self.eager
        if ex.mode != 'eager':
            kwargs = dict(dynamic=False)
            if ex.freezing:  # torch.compile takes either a mode or options
                kwargs['options'] = {'freezing': True,
                                     'triton.cudagraphs': ex.mode == 'cudagraphs'}
            elif ex.mode == 'cudagraphs':
                kwargs['mode'] = 'reduce-overhead'
            self.fn = torch.compile(self.eager, **kwargs)

    def __call__(self, x, layers=(), keep_index: Optional[torch.Tensor] = None):
        if self.fn is None:
            self._prepare(x.device)
        out = self.fn(x, layers=list(layers), keep_index=keep_index)
        if self.execution.mode == 'cudagraphs':  # outputs live in the graph's memory pool
            out = dict(out, tokens=out['tokens'].clone(),
                       layers={i: t.clone() for i, t in out['layers'].items()})
        return out
