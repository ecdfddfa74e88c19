"""The one student backbone used for DMT pretraining and every downstream task.

It is mmpretrain's ``VisionTransformer`` (same parameters, same checkpoint keys), plus:

* ``forward_tokens``: the full token sequence of the last block and of chosen intermediate
  blocks, optionally for a subset of patches (masked-input distillation);
* ViTDet-style windowed attention in chosen blocks (``window_size`` > 0; blocks listed in
  ``global_attn_indices`` keep global attention). Windowing re-uses the block's own
  attention weights, so any pretrained checkpoint loads unchanged;
* ViTDet's decomposed relative position bias (``use_rel_pos``) in every block: per block
  one table per axis, sized for the window (windowed blocks) or for the token grid of
  ``rel_pos_img_size`` (global blocks), zero-initialised (detectron2's ``rel_pos_zero_init``);
* ``out_with_norm``: the final norm applied to every output block (iBOT's segmentation
  backbone), not only to the last one;
* checked pretrained loading (``init_cfg=dict(type='Pretrained', checkpoint=...,
  prefix='backbone.')``): a missing file, a backbone weight absent from the checkpoint or
  of another shape is an error (mmengine only logs them), except the weights fine-tuning
  adds (relative-position tables, layer-scale factors), which keep their initial values
  when the checkpoint lacks them; a checkpoint position embedding with a CLS slot is cut
  and resized to this model's grid (mmpretrain's hook cannot do both at once).

Registered in mmpretrain's registry; mmdet / mmseg configs refer to it as
``type='mmpretrain.DMTViT'``.
"""
import math
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.utils import to_2tuple
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from torch.utils.checkpoint import checkpoint

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


def _rel_pos_table(q_size, k_size, table):
    """Relative-position embeddings (q_size, k_size, C) for one axis; a table of another
    length is linearly resized first (ViTDet's ``get_rel_pos``)."""
    length = 2 * max(q_size, k_size) - 1
    if table.shape[0] != length:
        table = F.interpolate(table.t().unsqueeze(0), size=length, mode='linear')[0].t()
    q = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    return table[(q - k + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


def decomposed_rel_pos_bias(q, rel_pos_h, rel_pos_w, hw):
    """ViTDet's decomposed relative position bias for queries ``q`` (B, heads, h*w, C) on an
    h x w token grid attending to the same grid: bias[q, k] = <q, R_h[qy, ky]> +
    <q, R_w[qx, kx]>, returned as (B, heads, h*w, h*w) to add to the attention logits."""
    h, w = hw
    B, heads, _, C = q.shape
    r_q = q.reshape(B, heads, h, w, C)
    rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, _rel_pos_table(h, h, rel_pos_h))
    rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, _rel_pos_table(w, w, rel_pos_w))
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, h * w, h * w)


def _attention_without_drop_path(attn, x, rel_pos_hw=None):
    """mmpretrain ``MultiheadAttention.forward`` minus its last step, the drop-path
    (``out_drop``): on windows that step would drop windows of an image independently.
    With ``rel_pos_hw`` (the h x w token grid of ``x``) the block's relative-position
    tables bias the attention logits."""
    if attn.v_shortcut:
        raise NotImplementedError('windowed attention does not support v_shortcut attention')
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dims).permute(2, 0, 3, 1, 4)
    bias = None
    if rel_pos_hw is not None:
        bias = decomposed_rel_pos_bias(qkv[0], attn.rel_pos_h, attn.rel_pos_w, rel_pos_hw)
    x = attn.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias,
                                          dropout_p=attn.attn_drop if attn.training else 0.)
    x = attn.proj(x.transpose(1, 2).reshape(B, N, attn.embed_dims))
    return attn.gamma1(attn.proj_drop(x))


def python_float_drop_probs(module: nn.Module) -> None:
    """mmpretrain gives each block's mmcv ``DropPath`` a numpy float (``np.linspace``);
    torch.compile traces numpy scalars as tensors, so ``if drop_prob == 0.`` becomes a
    data-dependent branch: a graph break in every block. A Python float of the same value
    compiles into one graph."""
    for m in module.modules():
        if isinstance(getattr(m, 'drop_prob', None), np.floating):
            m.drop_prob = float(m.drop_prob)


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
        use_rel_pos: decomposed relative position bias in every block (ViTDet); needs
            ``with_cls_token=False``.
        rel_pos_img_size: input size (pixels) whose token grid sizes the global blocks'
            relative-position tables (ViTDet: the 1024 canvas); defaults to ``img_size``.
            Other grids resize the tables linearly, as ViTDet does.
        out_with_norm: apply the final norm (``ln1``, from the checkpoint) to every output
            block (iBOT's ``out_with_norm``); needs ``final_norm=True``.
        with_cp: activation checkpointing of every block in training (recomputes the
            forward in backward: less memory for ViT-B at 1024 px, one more block forward).
        Other arguments are those of mmpretrain's ``VisionTransformer`` (e.g.
        ``layer_scale_init_value`` for learnable per-channel block scales).
    """

    def __init__(self, arch='vit-small', *args, window_size: int = 0,
                 global_attn_indices: Sequence[int] = (), use_rel_pos: bool = False,
                 rel_pos_img_size=None, out_with_norm: bool = False, with_cp: bool = False,
                 **kwargs):
        if isinstance(arch, str):
            arch = ARCH_ALIASES.get(arch.lower(), arch)
        if 'out_indices' in kwargs and not isinstance(kwargs['out_indices'], int):
            kwargs['out_indices'] = list(kwargs['out_indices'])  # mmpretrain assigns items
        super().__init__(arch, *args, **kwargs)
        self.window_size = int(window_size)
        self.global_attn_indices = {i % self.num_layers for i in global_attn_indices}
        self.with_cp = bool(with_cp)
        self.use_rel_pos = bool(use_rel_pos)
        self.out_with_norm = bool(out_with_norm)
        if (self.window_size > 0 or self.use_rel_pos) and self.with_cls_token:
            raise ValueError('windowed attention and relative position bias need '
                             'with_cls_token=False (ViTDet has no CLS token); the pretrained '
                             'cls_token is then ignored at load time')
        if self.out_with_norm and not self.final_norm:
            raise ValueError('out_with_norm=True applies the final norm to every output: '
                             'it needs final_norm=True')
        if self.use_rel_pos:
            self._add_rel_pos_tables(rel_pos_img_size or kwargs.get('img_size', 224))
        python_float_drop_probs(self)

    def _add_rel_pos_tables(self, rel_pos_img_size):
        """Zero-initialised tables (2 S - 1, head dims) per axis on each block's attention:
        S is the window side in windowed blocks, the token grid of ``rel_pos_img_size`` in
        global ones."""
        size = to_2tuple(rel_pos_img_size)
        patch = to_2tuple(self.patch_embed.projection.kernel_size)
        grid = (size[0] // patch[0], size[1] // patch[1])
        for index, layer in enumerate(self.layers):
            rows, cols = ((self.window_size, ) * 2 if self._windowed(index) else grid)
            head_dims = layer.attn.head_dims
            layer.attn.rel_pos_h = nn.Parameter(torch.zeros(2 * rows - 1, head_dims))
            layer.attn.rel_pos_w = nn.Parameter(torch.zeros(2 * cols - 1, head_dims))

    def added_weights(self):
        """Weights that fine-tuning adds to a pretrained ViT (relative-position tables,
        layer-scale factors): a checkpoint may lack them; they then keep their initial
        values (zero tables as ViTDet, layer scales at ``layer_scale_init_value``)."""
        return {name for name in self.state_dict()
                if name.endswith(('.rel_pos_h', '.rel_pos_w', '.gamma1.weight',
                                  '.gamma2.weight'))}

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
        added = self.added_weights() - set(ckpt)
        missing = sorted(set(own) - set(ckpt) - optional - added)
        mismatched = [f'{k}: checkpoint {tuple(ckpt[k].shape)} vs model {tuple(v.shape)}'
                      for k, v in own.items() if k in ckpt and ckpt[k].shape != v.shape]
        if missing or mismatched:
            raise RuntimeError(
                f'checkpoint {path!r} does not fit this {type(self).__name__} '
                f'(arch: {self.embed_dims} dims, {self.num_layers} blocks). Missing: '
                f'{missing or "none"}. Shape mismatches: {mismatched or "none"}. Check the '
                'arch (vit-tiny/vit-small/vit-base), patch size and init_cfg.prefix.')
        if added:
            print_log(f'{len(added)} fine-tuning weights absent from the checkpoint keep '
                      f'their initial values (relative-position tables zero, layer scales '
                      f'at their init value): {sorted(added)}', logger='current')
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
        windowed = self._windowed(index)
        if not windowed and not self.use_rel_pos:
            return layer(x)
        B, N, C = x.shape
        tokens = layer.ln1(x).view(B, *grid, C)
        if windowed:
            tokens, padded = window_partition(tokens, self.window_size)
            hw = (self.window_size, self.window_size)
        else:
            tokens, hw = tokens.view(B, N, C), tuple(grid)
        attn = _attention_without_drop_path(layer.attn, tokens,
                                            hw if self.use_rel_pos else None)
        if windowed:
            attn = window_unpartition(attn, self.window_size, padded, grid)
        # stochastic depth drops whole images, as in the global blocks, not single windows
        x = x + layer.attn.out_drop(attn.reshape(B, N, C))
        return layer.ffn(layer.ln2(x), identity=x)

    def forward(self, x):
        x, grid = self._embed(x)
        x = self.pre_norm(self.drop_after_pos(x))
        outs = []
        last = self.num_layers - 1
        for i in range(self.num_layers):
            x = self._run_layer(i, x, grid)
            if i == last and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                normed = self.out_with_norm and not (i == last and self.final_norm)
                outs.append(self._format_output(self.ln1(x) if normed else x, grid))
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
        if keep_index is not None and (self.window_size > 0 or self.use_rel_pos):
            raise ValueError('masked inputs cannot use windowed attention or relative '
                             'position bias')
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
