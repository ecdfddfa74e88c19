"""What every frozen teacher shares: load once, never train, never save; see its own pixels.

A teacher holds its network *outside* the module tree (``teacher.backbone`` still reaches
it), so the network's weights are not ``parameters()`` / ``state_dict()`` entries of any
model that contains the teacher. Consequences, all wanted: no optimizer constructor can
pick them up, checkpoints never carry them (and load back strictly), DDP neither broadcasts
nor syncs them, and a parent's ``requires_grad_()`` / ``apply(init_fn)`` cannot unfreeze or
overwrite them. ``.to()`` / ``.cuda()`` / ``.half()`` still reach it (``_apply`` is
forwarded).

The network (``backbone``) offers the token contract of ``DMTViT.forward_tokens``:
``forward_tokens(x, layers)`` -> ``tokens`` (B, extra + N, C; the final features),
``layers`` {block: (B, extra + N, C_block)}, ``grid``, ``num_extra_tokens`` and, for
networks whose summary is not their first token, ``summary`` (B, C); plus ``num_layers``
and ``embed_dims``. Subclasses build the network and load its checkpoint.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class BaseFrozenTeacher(BaseModule):
    """A frozen teacher: summary token, final patch tokens and chosen block outputs.

    Args:
        network: the frozen network (kept outside the module tree).
        checkpoint: path of the teacher's weights; None only for tests / random teachers.
        name: short name used in loss keys (``loss_tfd_<name>``).
        mean / std: the teacher's own pixel normalisation (0-255 scale, RGB). When they
            differ from ``data_mean`` / ``data_std`` (the data preprocessor's), inputs are
            re-normalised before the teacher sees them.
        out_layers: 0-based block indices whose patch tokens are also returned.
        img_size: resize inputs to this size first (bicubic), e.g. a patch-14 teacher at
            224 or SAM at 1024; None keeps the input size.
        forward_chunk: run the network on at most this many images at a time (memory of
            large teachers, e.g. SAM at 1024 px); None runs the whole batch at once.
    """

    def __init__(self, network: torch.nn.Module, checkpoint: Optional[str] = None,
                 name: str = 'teacher', mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 data_mean: Sequence[float] = IMAGENET_MEAN,
                 data_std: Sequence[float] = IMAGENET_STD,
                 out_layers: Sequence[int] = (), img_size: Optional[int] = None,
                 forward_chunk: Optional[int] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self._frozen = [network]  # a list: invisible to the module tree
        self.name = name
        self.checkpoint = checkpoint
        self.out_layers = [int(i) for i in out_layers]
        self.img_size = img_size
        if forward_chunk is not None and int(forward_chunk) < 1:
            raise ValueError(f'teacher {name!r}: forward_chunk must be >= 1 or None, got '
                             f'{forward_chunk}')
        self.forward_chunk = None if forward_chunk is None else int(forward_chunk)
        mean = data_mean if mean is None else mean
        std = data_std if std is None else std
        # x_teacher = (x_data * data_std + data_mean - mean) / std = x_data * scale + shift
        scale = [ds / s for ds, s in zip(data_std, std)]
        shift = [(dm - m) / s for dm, m, s in zip(data_mean, mean, std)]
        self.renormalize = (any(abs(a - 1) > 1e-6 for a in scale)
                            or any(abs(b) > 1e-6 for b in shift))
        self.register_buffer('pixel_scale', torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('pixel_shift', torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_load_state_dict_pre_hook(self._drop_saved_teacher_weights)
        self.freeze()

    # ------------------------------------------------------------------ what it is
    @property
    def backbone(self) -> torch.nn.Module:
        return self._frozen[0]

    @property
    def embed_dims(self) -> int:
        """Width of the summary token and of the final patch tokens."""
        return self.backbone.embed_dims

    @property
    def block_dims(self) -> int:
        """Width of the intermediate block outputs (``embed_dims`` unless the final
        features pass a neck, e.g. SAM's 256-d neck over 768-d blocks)."""
        return getattr(self.backbone, 'block_dims', self.embed_dims)

    @property
    def num_layers(self) -> int:
        return self.backbone.num_layers

    # ------------------------------------------------------------------ frozen for good
    def freeze(self):
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.eval()

    def train(self, mode: bool = True):
        """A teacher always stays in eval mode (dropout, drop-path off)."""
        return super().train(False)

    def _apply(self, fn, *args, **kwargs):
        """Device / dtype moves reach the hidden network too."""
        super()._apply(fn, *args, **kwargs)
        self.backbone._apply(fn, *args, **kwargs)
        return self

    @staticmethod
    def _drop_saved_teacher_weights(module, state_dict, prefix, *args):
        """Checkpoints that did store teacher weights still load: the teacher's weights
        always come from its own ``checkpoint`` file."""
        stale = [k for k in state_dict if k.startswith(prefix + 'backbone.')]
        for key in stale:
            state_dict.pop(key)
        if stale:
            print_log(f'{prefix}: ignored {len(stale)} saved teacher tensors; teachers load '
                      f'from their own checkpoint ({module.checkpoint})', logger='current')

    # ------------------------------------------------------------------ forward
    def prepare_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images normalised by the data preprocessor -> this teacher's pixels and size."""
        x = inputs.to(self.pixel_scale.dtype)  # float32 unless the teacher was cast
        if self.renormalize:
            x = x * self.pixel_scale + self.pixel_shift
        if self.img_size is not None and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bicubic',
                              align_corners=False)
        return x

    def _run(self, x: torch.Tensor, layers) -> Dict:
        on_gpu = x.device.type == 'cuda'  # bf16 there; fp32 elsewhere (also on 'meta')
        with torch.autocast(device_type='cuda' if on_gpu else 'cpu', dtype=torch.bfloat16,
                            enabled=on_gpu):
            out = self.backbone.forward_tokens(x, layers=layers)
        extra = out['num_extra_tokens']
        tokens = out['tokens'].float()
        summary = out.get('summary')
        if summary is None:
            summary = tokens[:, 0] if extra > 0 else tokens[:, extra:].mean(dim=1)
        return dict(cls=summary.float(), patch=tokens[:, extra:],
                    layers={i: t[:, extra:].float() for i, t in out['layers'].items()},
                    grid=tuple(out['grid']))

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, layers: Optional[Sequence[int]] = None) -> Dict:
        """inputs: images normalised by the data preprocessor, (B, 3, H, W). Returns
        ``cls`` (B, D: the CLS token, or the configured summary), ``patch`` (B, N, D: final
        patch tokens), ``layers`` {block: (B, N, D_block)} for ``layers`` (default
        ``out_layers``) and ``grid``; all float32."""
        layers = self.out_layers if layers is None else [int(i) for i in layers]
        x = self.prepare_inputs(inputs)
        if self.forward_chunk is None or x.shape[0] <= self.forward_chunk:
            return self._run(x, layers)
        parts = [self._run(chunk, layers) for chunk in x.split(self.forward_chunk)]
        return dict(cls=torch.cat([p['cls'] for p in parts]),
                    patch=torch.cat([p['patch'] for p in parts]),
                    layers={i: torch.cat([p['layers'][i] for p in parts])
                            for i in parts[0]['layers']},
                    grid=parts[0]['grid'])
