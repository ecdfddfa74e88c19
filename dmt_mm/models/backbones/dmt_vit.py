"""The one student backbone used for DMT pretraining and every downstream task.

It is mmpretrain's ``VisionTransformer`` (same parameters, same checkpoint keys), plus:

* ``forward_tokens``: the full token sequence of the last block and of chosen intermediate
  blocks, optionally for a subset of patches (masked-input distillation);
* ViTDet-style windowed attention in chosen blocks (``window_size`` > 0; blocks listed in
  ``global_attn_indices`` keep global attention). Windowing re-uses the block's own
  attention weights, so any pretrained checkpoint loads unchanged.

Registered in mmpretrain's registry; mmdet / mmseg configs refer to it as
``type='mmpretrain.DMTViT'``.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

# ViT-T/16 and ViT-S/16 are mmpretrain's 'deit-tiny' / 'deit-small'; its 'small' arch is a
# different, 768-wide 8-block model. These aliases say what users mean.
ARCH_ALIASES = {'vit-tiny': 'deit-tiny', 'vit-small': 'deit-small', 'vit-base': 'base',
                'vit-large': 'large'}


def window_partition(x, window_size):
    """(B, H, W, C) -> (B * num_windows, ws * ws, C), zero-padding H and W up to ws."""
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window_size, (-W) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows, window_size, padded_hw, hw):
    """Inverse of :func:`window_partition`, cropping the padding away."""
    Hp, Wp = padded_hw
    H, W = hw
    B = windows.shape[0] // ((Hp // window_size) * (Wp // window_size))
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W].contiguous()


@MODELS.register_module()
class DMTViT(VisionTransformer):
    """mmpretrain ViT with token outputs for distillation and optional windowed attention.

    Args:
        arch: an mmpretrain arch name or dict, or one of ``vit-tiny``/``vit-small``/
            ``vit-base``/``vit-large``.
        window_size: side of the attention windows in patches; 0 keeps global attention.
        global_attn_indices: blocks that keep global attention when ``window_size`` > 0.
        Other arguments are those of mmpretrain's ``VisionTransformer``.
    """

    def __init__(self, arch='vit-small', *args, window_size: int = 0,
                 global_attn_indices: Sequence[int] = (), **kwargs):
        if isinstance(arch, str):
            arch = ARCH_ALIASES.get(arch.lower(), arch)
        if 'out_indices' in kwargs and not isinstance(kwargs['out_indices'], int):
            kwargs['out_indices'] = list(kwargs['out_indices'])  # mmpretrain assigns items
        super().__init__(arch, *args, **kwargs)
        self.window_size = int(window_size)
        self.global_attn_indices = {i % self.num_layers for i in global_attn_indices}
        if self.window_size > 0 and self.with_cls_token:
            raise ValueError('windowed attention needs with_cls_token=False (ViTDet has no CLS '
                             'token); the pretrained cls_token is then ignored at load time')

    def _embed(self, x):
        B = x.shape[0]
        x, grid = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, grid,
                                 mode=self.interpolate_mode,
                                 num_extra_tokens=self.num_extra_tokens)
        return x, grid

    def _windowed(self, index):
        return self.window_size > 0 and index not in self.global_attn_indices

    def _run_layer(self, index, x, grid):
        layer = self.layers[index]
        if not self._windowed(index):
            return layer(x)
        B, N, C = x.shape
        windows, padded = window_partition(layer.ln1(x).view(B, *grid, C), self.window_size)
        attn = window_unpartition(layer.attn(windows), self.window_size, padded, grid)
        x = x + attn.view(B, N, C)
        return layer.ffn(layer.ln2(x), identity=x)

    def forward(self, x):
        x, grid = self._embed(x)
        x = self.pre_norm(self.drop_after_pos(x))
        outs = []
        for i in range(self.num_layers):
            x = self._run_layer(i, x, grid)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, grid))
        return tuple(outs)

    def forward_tokens(self, x, layers: Sequence[int] = (),
                       keep_index: Optional[torch.Tensor] = None) -> Dict:
        """Token sequences for distillation.

        Args:
            x: images (B, 3, H, W).
            layers: 0-based block indices whose (un-normalised) output tokens to return.
            keep_index: (B, N_keep) indices of the patches to encode (MAE-style masking);
                None encodes all patches.

        Returns:
            dict with ``tokens`` (B, extra + N, C; final-normed output of the last block),
            ``layers`` {index: tokens}, ``grid`` (h, w) and ``num_extra_tokens``.
        """
        if keep_index is not None and self.window_size > 0:
            raise ValueError('masked inputs cannot use windowed attention')
        x, grid = self._embed(x)
        if keep_index is not None:
            extra, patches = x[:, :self.num_extra_tokens], x[:, self.num_extra_tokens:]
            patches = torch.gather(
                patches, 1, keep_index.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
            x = torch.cat((extra, patches), dim=1)
        x = self.pre_norm(self.drop_after_pos(x))
        layers = {i % self.num_layers for i in layers}
        outputs = {}
        for i in range(self.num_layers):
            x = self._run_layer(i, x, grid)
            if i in layers:
                outputs[i] = x
        if self.final_norm:
            x = self.ln1(x)
        return dict(tokens=x, layers=outputs, grid=tuple(grid),
                    num_extra_tokens=self.num_extra_tokens)
