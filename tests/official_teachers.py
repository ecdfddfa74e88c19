"""Tiny teachers built by the authors' own code, with random weights, written in the
container each family publishes: the test-side reference for ``TimmTeacher``.

* DINOv2: ``DinoVisionTransformer`` of the PyPI upload ``dinov2`` (no registers) or of the
  authors' repository file (tests/third_party, registers), saved as the hub's plain state
  dict (``dinov2_vits14_pretrain.pth``);
* OpenAI CLIP / OpenCLIP: open_clip's ``CLIP``; OpenAI's release is a TorchScript archive
  (``ViT-B-16.pt``), OpenCLIP's a state dict (``open_clip_pytorch_model.bin`` or
  ``open_clip_model.safetensors``);
* SigLIP: open_clip's ``ViT-B-16-SigLIP`` config with a tiny timm tower;
* SAM: segment_anything's ``Sam`` (encoder, prompt encoder, mask decoder), saved as
  ``Sam.state_dict()`` (``sam_vit_b_01ec64.pth``).
"""
import copy
import json
import warnings
from functools import partial

import torch
import torch.nn as nn


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere (norm scales around 1), so no tensor is left at an init
    value that would hide a swapped or missing weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit('.', 1)[-1]
            if p.dim() == 1 and leaf == 'weight':
                p.copy_(1 + 0.1 * noise)        # norm scales
            elif leaf == 'gamma':
                p.copy_(0.5 + 0.1 * noise)      # layer scale
            else:
                p.copy_(0.05 * noise if p.dim() > 1 else 0.02 * noise)
    return module.eval()


def save_state_dict(state_dict, path):
    """A plain state dict as ``torch.save`` (``.pth`` / ``.bin``) or safetensors writes it."""
    state = {k: v.contiguous() for k, v in state_dict.items()}
    if str(path).endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------ DINOv2
def dinov2(embed_dim=64, depth=2, num_heads=2, registers=0, swiglu=False, img_size=126,
           seed=0):
    """The authors' DinoVisionTransformer as the hub builds it (``_make_dinov2_model``:
    layer scale, ``block_chunks=0``), patch 14, with an ``img_size`` position table."""
    kwargs = dict(img_size=img_size, patch_size=14, init_values=1.0, block_chunks=0,
                  mlp_ratio=4, ffn_layer='swiglufused' if swiglu else 'mlp',
                  embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "xFormers not available"
        if registers:
            from third_party.dinov2_vision_transformer import DinoVisionTransformer
            model = DinoVisionTransformer(num_register_tokens=registers,
                                          interpolate_antialias=False, interpolate_offset=0.1,
                                          **kwargs)
        else:
            from dinov2.models.vision_transformer import DinoVisionTransformer
            model = DinoVisionTransformer(**kwargs)
    return randomize(model, seed)


# ------------------------------------------------------------------------------ CLIP family
def clip(width=64, layers=2, patch_size=16, image_size=64, quick_gelu=True, seed=1):
    """open_clip's CLIP with OpenAI's layout; heads = width // 64 as OpenAI's."""
    from open_clip.model import CLIP
    vision = dict(image_size=image_size, layers=layers, width=width, patch_size=patch_size)
    text = dict(context_length=8, vocab_size=100, width=64, heads=1, layers=1)
    return randomize(CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text,
                          quick_gelu=quick_gelu), seed)


def save_openai_archive(model, path):
    """OpenAI's release format: a TorchScript archive of the whole CLIP model, its matrices
    in fp16 (``convert_weights``, which open_clip's reader applies again), whose state dict
    has OpenAI's names plus ``input_resolution`` / ``context_length`` / ``vocab_size``
    (open_clip's ``build_model_from_openai_state_dict`` drops these three)."""
    from open_clip.model import convert_weights_to_lp
    scripted = copy.deepcopy(model)
    convert_weights_to_lp(scripted, dtype=torch.float16)
    mask = scripted._buffers.pop('attn_mask')     # open_clip's buffer; OpenAI's is not one
    scripted.attn_mask = mask
    for key, value in (('input_resolution', model.visual.image_size[0]),
                       ('context_length', 8), ('vocab_size', 100)):
        scripted.__dict__.pop(key, None)            # open_clip keeps two of them as ints
        scripted.register_buffer(key, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.jit deprecation notice
        torch.jit.script(scripted).save(str(path))
    return path


SIGLIP_TINY = dict(embed_dim=64, depth=2, num_heads=2)


def _register_tiny_siglip_trunk():
    """open_clip's SigLIP image tower is the timm model its config names
    (ViT-B-16-SigLIP.json: vit_base_patch16_siglip_224); a tiny one of the same definition
    is registered under its own name so open_clip can build it."""
    from timm.models import is_model, register_model
    from timm.models.vision_transformer import _create_vision_transformer
    name = 'dmt_test_tiny_patch16_siglip'
    if not is_model(name):
        def dmt_test_tiny_patch16_siglip(pretrained=False, **kwargs):
            args = dict(patch_size=16, class_token=False, global_pool='map', img_size=64,
                        **SIGLIP_TINY)
            return _create_vision_transformer(name, pretrained=pretrained,
                                              **dict(args, **kwargs))
        register_model(dmt_test_tiny_patch16_siglip)
    return name


def siglip(tmp_path, seed=3):
    """open_clip's SigLIP ViT-B/16 config (ViT-B-16-SigLIP.json) with the tiny tower, and
    the released weights' preprocessing (open_clip/pretrained.py, tag 'webli')."""
    import open_clip
    cfg = json.loads(json.dumps(open_clip.get_model_config('ViT-B-16-SigLIP')))
    cfg['embed_dim'] = SIGLIP_TINY['embed_dim']
    cfg['vision_cfg'].update(image_size=64, timm_model_name=_register_tiny_siglip_trunk())
    cfg['text_cfg'].update(context_length=8, vocab_size=100, width=64, heads=2, layers=1)
    cfg_path = tmp_path / 'dmt-test-tiny-SigLIP.json'
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    model = open_clip.create_model('dmt-test-tiny-SigLIP', pretrained=None)
    return randomize(model, seed), open_clip.get_pretrained_cfg('ViT-B-16-SigLIP', 'webli')


# ------------------------------------------------------------------------------------- SAM
def sam(img_size=256, window=4, embed_dim=32, depth=2, global_attn=(1, ), neck=32, seed=4):
    """segment_anything's full ``Sam`` as ``build_sam._build_sam`` assembles it, tiny; at
    1024 px, window 14 and a 256-d neck it is ``_build_sam`` itself."""
    from segment_anything.build_sam import _build_sam
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )
    if (img_size, window, neck) == (1024, 14, 256):
        model = _build_sam(encoder_embed_dim=embed_dim, encoder_depth=depth,
                           encoder_num_heads=2, encoder_global_attn_indexes=list(global_attn))
    else:
        grid = img_size // 16
        model = Sam(
            image_encoder=ImageEncoderViT(
                depth=depth, embed_dim=embed_dim, img_size=img_size, mlp_ratio=4,
                norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=16,
                qkv_bias=True, use_rel_pos=True, global_attn_indexes=list(global_attn),
                window_size=window, out_chans=neck),
            prompt_encoder=PromptEncoder(embed_dim=neck, image_embedding_size=(grid, grid),
                                         input_image_size=(img_size, img_size),
                                         mask_in_chans=4),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3, transformer_dim=neck, iou_head_depth=1,
                iou_head_hidden_dim=16,
                transformer=TwoWayTransformer(depth=1, embedding_dim=neck, mlp_dim=64,
                                              num_heads=2)))
    return randomize(model, seed)
