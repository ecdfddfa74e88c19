"""The one student backbone used for DMT pretraining and every downstream task.

It is mmpretrain's ``VisionTransformer`` (same parameters, same checkpoint keys), plus:

* ``forward_tokens``: the full token sequence of the last block and of chosen intermediate
  blocks, optionally for a subset of patches (masked-input distillation);
* ViTDet-style windowed attention in chosen blocks (``window_size`` > 0; blocks listed in
  ``global_attn_indices`` keep global attention). Windowing re-uses the block's own
  attention weights, so any pretrained checkpoint loads unchanged;
* checked pretrained loading (``init_cfg=dict(type='Pretrained', checkpoint=...,
  prefix='backbone.')``): a missing file, a backbone weight absent from the checkpoint or
  of another shape is an error (mmengine only logs them), and a checkpoint position
  embedding with a CLS slot is cut and resized to this model's grid (mmpretrain's hook
  cannot do both at once).

Registered in mmpretrain's registry; mmdet / mmseg configs refer to it as
``type='mmpretrain.DMTViT'``.
"""
import math
import os.path as osp
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from mmengine.logging import print_log
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


def _attention_without_drop_path(attn, x):
    """mmpretrain ``MultiheadAttention.forward`` minus its last step, the drop-path
    (``out_drop``): on windows that step would drop windows of an image independently."""
    if attn.v_shortcut:
        raise NotImplementedError('windowed attention does not support v_shortcut attention')
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dims).permute(2, 0, 3, 1, 4)
    x = attn.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2],
                                          dropout_p=attn.attn_drop if attn.training else 0.)
    x = attn.proj(x.transpose(1, 2).reshape(B, N, attn.embed_dims))
    return attn.gamma1(attn.proj_drop(x))


def _is_square(n):
    return n > 0 and math.isqrt(n) ** 2 == n


@MODELS.register_module()
class DMTViT(VisionTransformer):
    """mmpretrain ViT with token outputs for distillation and optional windowed attention.

    Args:
        arch: an mmpretrain arch name or dict, or one of ``vit-tiny``/``vit-small``/
            ``vit-base``/``vit-large``.
        window_size: side of the attention windows in patches; 0 keeps global attention.
        global_attn_indices: blocks that keep global attention when ``window_size`` > 0.
        with_cp: activation checkpointing of every block in training (recomputes the
            forward in backward: less memory for ViT-B at 1024 px, one more block forward).
        Other arguments are those of mmpretrain's ``VisionTransformer``.
    """

    def __init__(self, arch='vit-small', *args, window_size: int = 0,
                 global_attn_indices: Sequence[int] = (), with_cp: bool = False, **kwargs):
        if isinstance(arch, str):
            arch = ARCH_ALIASES.get(arch.lower(), arch)
        if 'out_indices' in kwargs and not isinstance(kwargs['out_indices'], int):
            kwargs['out_indices'] = list(kwargs['out_indices'])  # mmpretrain assigns items
        super().__init__(arch, *args, **kwargs)
        self.window_size = int(window_size)
        self.global_attn_indices = {i % self.num_layers for i in global_attn_indices}
        self.with_cp = bool(with_cp)
        if self.window_size > 0 and self.with_cls_token:
            raise ValueError('windowed attention needs with_cls_token=False (ViTDet has no CLS '
                             'token); the pretrained cls_token is then ignored at load time')

    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        """Drop a checkpoint's CLS position when this model has no CLS token, whatever the
        two grids are; mmpretrain's hook then resizes the patch grid (bicubic)."""
        name = prefix + 'pos_embed'
        if self.cls_token is None and name in state_dict:
            length = state_dict[name].shape[1]
            if _is_square(length - 1) and not _is_square(length):
                state_dict[name] = state_dict[name][:, 1:]
        super()._prepare_pos_embed(state_dict, prefix, *args, **kwargs)

    def _pretrained_cfg(self):
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        return next((c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained'),
                    None)

    def init_weights(self):
        """mmengine's ``Pretrained`` loading, made strict where it matters: a weight of this
        backbone that the checkpoint lacks (it would stay randomly initialised) or that has
        another shape (mmengine would skip it with a warning) is an error. Checkpoint keys
        the backbone does not use (e.g. ``cls_token`` under ViTDet, the final norm with
        ``final_norm=False``) are listed in the log."""
        cfg = self._pretrained_cfg()
        if cfg is None:
            return super().init_weights()
        path = cfg.get('checkpoint')
        if not path or ('://' not in str(path) and not osp.isfile(osp.expanduser(str(path)))):
            raise FileNotFoundError(
                f'the pretrained student checkpoint {path!r} (model.backbone.init_cfg.'
                'checkpoint) does not exist. Pass a DMT checkpoint or the output of '
                'tools/model_converters/extract_student.py, e.g. --cfg-options '
                'model.backbone.init_cfg.checkpoint=PATH (or model.backbone.init_cfg=None to '
                'train from scratch)')
        handle = self._register_load_state_dict_pre_hook(
            lambda state_dict, prefix, *args: self._check_pretrained(state_dict, prefix, path))
        try:
            super().init_weights()
        finally:
            handle.remove()

    def _check_pretrained(self, state_dict, prefix, path):
        """Load pre-hook (runs after the pos-embed hook): compare keys and shapes."""
        own = self.state_dict()
        ckpt = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        optional = {'ln2.weight', 'ln2.bias'} if self.out_type == 'avg_featmap' else set()
        missing = sorted(set(own) - set(ckpt) - optional)
        mismatched = [f'{k}: checkpoint {tuple(ckpt[k].shape)} vs model {tuple(v.shape)}'
                      for k, v in own.items() if k in ckpt and ckpt[k].shape != v.shape]
        if missing or mismatched:
            raise RuntimeError(
                f'checkpoint {path!r} does not fit this {type(self).__name__} '
                f'(arch: {self.embed_dims} dims, {self.num_layers} blocks). Missing: '
                f'{missing or "none"}. Shape mismatches: {mismatched or "none"}. Check the '
                'arch (vit-tiny/vit-small/vit-base), patch size and init_cfg.prefix.')
        unused = sorted(set(ckpt) - set(own))
        if unused:
            print_log(f'checkpoint keys unused by the backbone: {unused}', logger='current')

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
        if self.with_cp and self.training and x.requires_grad:
            return checkpoint(self._layer_forward, index, x, grid, use_reentrant=False)
        return self._layer_forward(index, x, grid)

    def _layer_forward(self, index, x, grid):
        layer = self.layers[index]
        if not self._windowed(index):
            return layer(x)
        B, N, C = x.shape
        windows, padded = window_partition(layer.ln1(x).view(B, *grid, C), self.window_size)
        attn = window_unpartition(_attention_without_drop_path(layer.attn, windows),
                                  self.window_size, padded, grid)
        # stochastic depth drops whole images, as in the global blocks, not single windows
        x = x + layer.attn.out_drop(attn.view(B, N, C))
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
