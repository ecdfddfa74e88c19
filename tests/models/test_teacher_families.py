"""Teachers beyond the paper load from the file their authors publish and give the features
of the authors' own code.

For every family a tiny model of the official package (``dinov2`` from PyPI and, for
registers, the authors' repository file in tests/third_party; ``open-clip-torch`` for OpenAI
CLIP, OpenCLIP and SigLIP; ``segment-anything``) gets random weights and is saved in the
container its authors publish (hub state dict, OpenAI's TorchScript archive, OpenCLIP's
``.bin`` / ``.safetensors``, SAM's state dict). ``TimmTeacher`` loads that file through the
project's path and must match the official summary token, final patch tokens and an
intermediate block to 1e-4 (max abs), on the same raw pixels normalised by each side's own
rule (the teacher re-normalises the data preprocessor's ImageNet-normalised input).
Wrong files are refused in one line that names the fix.
"""
import math

import official_teachers as official
import pytest
import torch
import torch.nn as nn

from dmt_mm.checkpoint.format_errors import CheckpointFormatError
from dmt_mm.checkpoint.teacher_layouts import dinov2_resize_pos_embed
from dmt_mm.models.teachers import FrozenViTTeacher, TimmTeacher
from dmt_mm.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD

TOL = 1e-4
MAX_DIFFS = {}  # family -> max abs difference, printed at the end of the module (-s)


@pytest.fixture(scope='module', autouse=True)
def report_differences():
    yield
    for name, diff in sorted(MAX_DIFFS.items()):
        print(f'\n{name}: max abs difference to the official features {diff:.2e}')


def raw_pixels(size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, size, size, generator=gen) * 255


def normalise(raw, mean, std):
    mean = torch.tensor(mean, dtype=raw.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=raw.dtype).view(1, 3, 1, 1)
    return (raw - mean) / std


def data_input(raw):
    """What the data preprocessor hands the teachers: ImageNet-normalised pixels."""
    return normalise(raw, IMAGENET_MEAN, IMAGENET_STD)


def check(name, teacher, raw, summary, patch, block, block_index=0):
    """The teacher's outputs on ``raw`` against the official ones; records the max diff."""
    teacher.init_weights()
    out = teacher(data_input(raw), layers=[block_index])
    diffs = dict(summary=(out['cls'] - summary).abs().max().item(),
                 patch=(out['patch'] - patch).abs().max().item(),
                 block=(out['layers'][block_index] - block).abs().max().item())
    MAX_DIFFS[name] = max(diffs.values())
    assert out['cls'].shape == summary.shape and out['patch'].shape == patch.shape
    assert max(diffs.values()) <= TOL, diffs
    # a wrong conversion would not be small: the features are far from zero
    assert patch.abs().mean() > 100 * TOL and summary.abs().mean() > 100 * TOL
    return out


def assert_one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert '\n' not in message, message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------- DINOv2
DINO_TINY = dict(embed_dim=64, depth=2, num_heads=2)


@pytest.mark.parametrize('variant', ['plain', 'reg4', 'swiglu'])
def test_dinov2_matches_the_authors_code(variant, tmp_path):
    registers = 4 if variant == 'reg4' else 0
    reference = official.dinov2(registers=registers, swiglu=variant == 'swiglu')
    path = tmp_path / f'dinov2_vits14{"_reg4" if registers else ""}_pretrain.pth'
    torch.save(reference.state_dict(), path)      # the hub file: the plain state dict
    arch = {'plain': 'vit_small_patch14_dinov2', 'reg4': 'vit_small_patch14_reg4_dinov2',
            'swiglu': 'vit_giant_patch14_dinov2'}[variant]
    kwargs = dict(DINO_TINY)
    if variant == 'swiglu':  # SwiGLUFFNFused: hidden (int(4 * 64 * 2 / 3) + 7) // 8 * 8 = 176
        kwargs['mlp_ratio'] = 2 * 176 / 64
    # 70 px = a 5 x 5 grid: the 9 x 9 table is resized, as the authors' code does at 224
    teacher = TimmTeacher(family='dinov2', arch=arch, checkpoint=str(path), img_size=70,
                          model_kwargs=kwargs)
    assert teacher.patch_size == 14 and teacher.backbone.grid == (5, 5)
    raw = raw_pixels(70)
    with torch.no_grad():
        x = normalise(raw, [255 * m for m in (0.485, 0.456, 0.406)],
                      [255 * s for s in (0.229, 0.224, 0.225)])  # dinov2/data/transforms.py
        feats = reference.forward_features(x)
        block = reference.get_intermediate_layers(x, n=[0], norm=False)[0]
    out = check(f'dinov2-{variant}', teacher, raw, feats['x_norm_clstoken'],
                feats['x_norm_patchtokens'], block)
    assert out['grid'] == (5, 5)


def test_dinov2_position_table_follows_the_authors_rule():
    """At its 518-px size the table is untouched; at 224 px it is the authors' bicubic with
    scale (16 + 0.1) / 37, which timm's own resampling does not reproduce."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(1, 1 + 37 * 37, 8, generator=gen)
    assert dinov2_resize_pos_embed(table, (37, 37)) is table
    resized = dinov2_resize_pos_embed(table, (16, 16))
    patch = table[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    hand = torch.nn.functional.interpolate(patch, scale_factor=(16.1 / 37, 16.1 / 37),
                                           mode='bicubic', align_corners=False)
    torch.testing.assert_close(resized[:, 1:], hand.permute(0, 2, 3, 1).reshape(1, 256, 8))
    torch.testing.assert_close(resized[:, :1], table[:, :1])
    from timm.layers import resample_abs_pos_embed
    timm_way = resample_abs_pos_embed(table, new_size=(16, 16), num_prefix_tokens=1)
    assert (timm_way - resized).abs().max() > 1e-2


# ------------------------------------------------------------------- CLIP / OpenCLIP
CLIP_TINY = dict(embed_dim=64, depth=2, num_heads=1)


def clip_reference(model, x):
    """Official outputs: the final-normed CLS before the projection (captured at
    ``ln_post``), the patch tokens, block 0 (open_clip's ``forward_intermediates``)."""
    visual = model.visual
    captured = {}
    handle = visual.ln_post.register_forward_hook(lambda m, i, o: captured.update(out=o))
    visual.output_tokens = True
    try:
        with torch.no_grad():
            pooled, tokens = visual(x)
            block = visual.forward_intermediates(x, indices=[0], output_fmt='NLC',
                                                 intermediates_only=True)
    finally:
        handle.remove()
        visual.output_tokens = False
    summary = captured['out'][:, 0]
    torch.testing.assert_close(pooled, summary @ visual.proj)  # what CLIP projects
    return summary, tokens, block['image_intermediates'][0]


def test_openai_clip_from_its_torchscript_archive_matches_open_clip(tmp_path):
    import open_clip
    path = tmp_path / 'ViT-B-16.pt'
    official.save_openai_archive(official.clip(quick_gelu=True), path)
    # the official reading of OpenAI's archive (QuickGELU model, OpenAI names)
    reference = open_clip.load_openai_model(str(path), device='cpu').eval()
    teacher = TimmTeacher(family='openai_clip', arch='vit_base_patch16_clip_quickgelu_224',
                          checkpoint=str(path), img_size=64, model_kwargs=CLIP_TINY)
    raw = raw_pixels(64, seed=1)
    x = normalise(raw, [255 * m for m in open_clip.OPENAI_DATASET_MEAN],
                  [255 * s for s in open_clip.OPENAI_DATASET_STD])
    check('openai-clip (TorchScript)', teacher, raw, *clip_reference(reference, x))


@pytest.mark.parametrize('container', ['open_clip_pytorch_model.bin',
                                       'open_clip_model.safetensors'])
def test_open_clip_matches_open_clip(container, tmp_path):
    import open_clip
    reference = official.clip(quick_gelu=False, seed=2)
    path = official.save_state_dict(reference.state_dict(), tmp_path / container)
    teacher = TimmTeacher(family='open_clip', arch='vit_base_patch16_clip_224',
                          checkpoint=str(path), img_size=64, model_kwargs=CLIP_TINY)
    raw = raw_pixels(64, seed=2)
    x = normalise(raw, [255 * m for m in open_clip.OPENAI_DATASET_MEAN],
                  [255 * s for s in open_clip.OPENAI_DATASET_STD])
    check(f'open_clip ({container.rsplit(".", 1)[1]})', teacher, raw,
          *clip_reference(reference, x))


# --------------------------------------------------------------------------------- SigLIP
SIGLIP_TINY = official.SIGLIP_TINY


@pytest.mark.parametrize('container', [
    pytest.param('open_clip_pytorch_model.bin', marks=pytest.mark.slow),  # same reader as CLIP
    'open_clip_model.safetensors'])
def test_siglip_matches_open_clip(container, tmp_path):
    reference, preprocess = official.siglip(tmp_path)
    assert tuple(preprocess['mean']) == (0.5, 0.5, 0.5)
    assert any(k.startswith('visual.trunk.attn_pool.') for k in reference.state_dict())
    path = official.save_state_dict(reference.state_dict(), tmp_path / container)
    teacher = TimmTeacher(family='siglip', arch='vit_base_patch16_siglip_224',
                          checkpoint=str(path), img_size=64, model_kwargs=SIGLIP_TINY)
    raw = raw_pixels(64, seed=3)
    x = normalise(raw, [255 * m for m in preprocess['mean']],
                  [255 * s for s in preprocess['std']])
    with torch.no_grad():
        summary = reference.encode_image(x)             # the attention-pool output
        patch = reference.visual.trunk.forward_features(x)
        block = reference.visual.forward_intermediates(
            x, indices=[0], output_fmt='NLC', intermediates_only=True)['image_intermediates'][0]
    out = check(f'siglip ({container.rsplit(".", 1)[1]})', teacher, raw, summary, patch, block)
    assert out['grid'] == (4, 4) and teacher.backbone.num_extra_tokens == 0


# ------------------------------------------------------------------------------------ SAM
SAM_TINY = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=[1])


def check_sam(tmp_path, img_size, window, neck, batch):
    sam = official.sam(img_size, window, neck=neck)
    path = tmp_path / 'sam_vit_b_01ec64.pth'
    torch.save(sam.state_dict(), path)                  # the published file: Sam's state dict
    kwargs = dict(SAM_TINY, window_size=window, neck_chans=neck)
    teacher = TimmTeacher(family='sam', arch='samvit_base_patch16', checkpoint=str(path),
                          img_size=img_size, model_kwargs=kwargs)
    assert teacher.embed_dims == neck and teacher.block_dims == 32
    raw = raw_pixels(img_size, seed=4)[:batch]
    blocks = {}
    handle = sam.image_encoder.blocks[0].register_forward_hook(
        lambda m, i, o: blocks.update(out=o))
    with torch.no_grad():
        x = (raw - sam.pixel_mean) / sam.pixel_std      # Sam.preprocess, without the padding
        features = sam.image_encoder(x)                 # the neck: (B, neck, H/16, W/16)
    handle.remove()
    patch = features.flatten(2).transpose(1, 2)
    out = check(f'sam ({img_size} px)', teacher, raw, patch.mean(dim=1), patch,
                blocks['out'].flatten(1, 2))
    assert out['grid'] == (img_size // 16, img_size // 16)


def test_sam_matches_segment_anything(tmp_path):
    """256 px, windows of 4 and one global block: every part of SAM's encoder, fast."""
    check_sam(tmp_path, img_size=256, window=4, neck=32, batch=2)


@pytest.mark.slow
def test_sam_at_1024_matches_segment_anything(tmp_path):
    """_build_sam itself (1024 px, window 14 with padding to 70, 256-d neck): 64 x 64."""
    check_sam(tmp_path, img_size=1024, window=14, neck=256, batch=1)


def test_family_pixel_normalisation_is_the_official_one():
    """The family defaults equal the constants of the official packages."""
    import open_clip
    from dinov2.data.transforms import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from segment_anything.modeling import Sam

    from dmt_mm.models.teachers import TEACHER_FAMILIES as F
    torch.testing.assert_close(torch.tensor(F['dinov2']['mean']),
                               255 * torch.tensor(IMAGENET_DEFAULT_MEAN, dtype=torch.float32))
    torch.testing.assert_close(torch.tensor(F['dinov2']['std']),
                               255 * torch.tensor(IMAGENET_DEFAULT_STD, dtype=torch.float32))
    for family, model, tag in (('openai_clip', 'ViT-B-16', 'openai'),
                               ('open_clip', 'ViT-B-16', 'laion2b_s34b_b88k'),
                               ('siglip', 'ViT-B-16-SigLIP', 'webli')):
        released = open_clip.get_pretrained_cfg(model, tag)
        torch.testing.assert_close(torch.tensor(F[family]['mean']),
                                   255 * torch.tensor(released['mean']))
        torch.testing.assert_close(torch.tensor(F[family]['std']),
                                   255 * torch.tensor(released['std']))
    assert open_clip.get_pretrained_cfg('ViT-B-16', 'openai')['quick_gelu']
    assert 'quickgelu' in F['openai_clip']['arch'] and 'quickgelu' not in F['open_clip']['arch']
    siglip = open_clip.get_model_config('ViT-B-16-SigLIP')
    assert siglip['vision_cfg']['timm_model_name'] == F['siglip']['arch']
    assert siglip['vision_cfg']['image_size'] == F['siglip']['img_size']
    import inspect
    sam_defaults = inspect.signature(Sam.__init__).parameters
    assert list(F['sam']['mean']) == list(sam_defaults['pixel_mean'].default)
    assert list(F['sam']['std']) == list(sam_defaults['pixel_std'].default)
    assert F['sam']['img_size'] == 1024 and F['dinov2']['img_size'] == 224


# --------------------------------------------------------------------------- wrong files
@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Published-style files of each family (tiny, random)."""
    root = tmp_path_factory.mktemp('teacher_files')
    paths = {}
    paths['dinov2'] = root / 'dinov2_vits14_pretrain.pth'
    torch.save(official.dinov2().state_dict(), paths['dinov2'])
    paths['dinov2_reg'] = root / 'dinov2_vits14_reg4_pretrain.pth'
    torch.save(official.dinov2(registers=4).state_dict(), paths['dinov2_reg'])
    clip = official.clip(quick_gelu=False).state_dict()
    paths['clip'] = root / 'open_clip_pytorch_model.bin'
    torch.save(clip, paths['clip'])
    paths['clip_text'] = root / 'text_only.bin'
    torch.save({k: v for k, v in clip.items() if not k.startswith('visual.')},
               paths['clip_text'])
    paths['hf_clip'] = root / 'pytorch_model.bin'
    torch.save({'vision_model.embeddings.patch_embedding.weight': torch.zeros(4, 3, 16, 16),
                'text_model.embeddings.token_embedding.weight': torch.zeros(10, 4)},
               paths['hf_clip'])
    paths['sam'] = root / 'sam_vit_b_01ec64.pth'
    torch.save(official.sam().state_dict(), paths['sam'])     # 256 px, window 4, neck 32
    return paths


def teacher_for(family, path, **kwargs):
    defaults = dict(dinov2=dict(arch='vit_small_patch14_dinov2', img_size=70,
                                model_kwargs=DINO_TINY),
                    open_clip=dict(img_size=64, model_kwargs=CLIP_TINY),
                    sam=dict(img_size=256,
                             model_kwargs=dict(SAM_TINY, window_size=4, neck_chans=32)))[family]
    defaults.update(kwargs)
    return TimmTeacher(family=family, checkpoint=str(path), **defaults)


@pytest.mark.parametrize('family, key, fragments', [
    ('dinov2', 'sam', ('sam_vit_b_01ec64.pth', 'Segment Anything', "family='sam'")),
    ('sam', 'dinov2', ('DINOv2', "family='dinov2'")),
    ('open_clip', 'clip_text', ('text tower', 'ViT-B-16.pt', 'open_clip_pytorch_model.bin')),
    ('open_clip', 'hf_clip', ('Hugging Face', 'open_clip_pytorch_model.bin')),
    ('dinov2', 'dinov2_reg', ('has 4 register tokens, the teacher 0',
                              'vit_base_patch14_reg4_dinov2')),
], ids=['sam-as-dinov2', 'dinov2-as-sam', 'clip-text-tower', 'hugging-face-clip',
        'registers-into-plain-arch'])
def test_wrong_files_are_refused_in_one_line_naming_the_fix(files, family, key, fragments):
    with pytest.raises(CheckpointFormatError) as exc:
        teacher_for(family, files[key]).init_weights()
    assert_one_line(exc, *fragments)


def test_width_mismatch_names_the_sizes(files):
    with pytest.raises(CheckpointFormatError) as exc:
        teacher_for('dinov2', files['dinov2'],
                    model_kwargs=dict(DINO_TINY, embed_dim=96, num_heads=2)).init_weights()
    assert_one_line(exc, '64 wide, the teacher 96')


def test_new_family_files_given_to_the_plain_vit_teacher_name_timm_teacher(files):
    for key, family in (('dinov2', "family='dinov2'"), ('sam', "family='sam'"),
                        ('clip', "'open_clip'")):
        teacher = FrozenViTTeacher(backbone=dict(arch='vit-small'), checkpoint=str(files[key]))
        with pytest.raises(CheckpointFormatError) as exc:
            teacher.init_weights()
        assert_one_line(exc, 'TimmTeacher', family)


def test_openai_clip_needs_quick_gelu():
    with pytest.raises(ValueError, match='QuickGELU'):
        TimmTeacher(family='openai_clip', arch='vit_base_patch16_clip_224', img_size=64,
                    model_kwargs=CLIP_TINY)


def test_loaded_file_reports_what_it_ignored(files):
    from dmt_mm.checkpoint.teacher_layouts import load_teacher_weights
    teacher = teacher_for('sam', files['sam'])
    found = load_teacher_weights(teacher.backbone.model, str(files['sam']), 'sam')
    assert found.layout == 'sam'
    assert any(k.startswith('mask_decoder.') for k in found.ignored)
    assert any(k.startswith('prompt_encoder.') for k in found.ignored)
    assert not any(k.startswith('image_encoder.') for k in found.ignored)
    clip = teacher_for('open_clip', files['clip'])
    found = load_teacher_weights(clip.backbone.model, str(files['clip']), 'open_clip')
    assert 'visual.proj' in found.ignored and 'token_embedding.weight' in found.ignored


# ------------------------------------------------------------------ teachers in the generator
def test_sam_neck_with_intermediate_blocks_is_refused_with_the_fix():
    from dmt_mm.models.target_generators import MultiTeacherTargetGenerator
    sam = dict(type='TimmTeacher', name='sam', family='sam', img_size=256,
               model_kwargs=dict(SAM_TINY, window_size=4))
    gen = MultiTeacherTargetGenerator(teachers=[sam], allow_random_teachers=True)
    gen.request([[1]], cls=True)  # the last block (the neck) alone is fine
    with pytest.raises(ValueError, match="final_features='block'"):
        gen.request([[0, 1]], cls=True)
    sam['final_features'] = 'block'
    gen = MultiTeacherTargetGenerator(teachers=[sam], allow_random_teachers=True)
    gen.request([[0, 1]], cls=True)
    targets = gen(torch.randn(2, 3, 64, 64), (4, 4))[0]
    assert targets[0].shape == targets[1].shape == (2, 16, 32)


def test_teachers_of_three_families_give_targets_on_the_student_grid():
    """Widths 64 / 48 / 256, patches 14 / 16 / 16 at 70 / 64 / 256 px: every target is on
    the student's 4 x 4 grid with the teacher's own width."""
    from dmt_mm.models.target_generators import MultiTeacherTargetGenerator
    teachers = [
        dict(type='TimmTeacher', name='dinov2', family='dinov2', img_size=70,
             model_kwargs=DINO_TINY),
        dict(type='TimmTeacher', name='clip', family='openai_clip', img_size=64,
             model_kwargs=dict(embed_dim=48, depth=2, num_heads=1)),
        dict(type='TimmTeacher', name='sam', family='sam', img_size=256,
             model_kwargs=dict(SAM_TINY, window_size=4)),
    ]
    gen = MultiTeacherTargetGenerator(teachers=teachers, allow_random_teachers=True)
    assert [t['embed_dims'] for t in gen.teacher_specs()] == [64, 48, 256]
    gen.request([[1], [1], [1]], cls=True)
    gen.init_weights()
    targets = gen(torch.randn(2, 3, 64, 64), (4, 4))
    for target, dims in zip(targets, (64, 48, 256)):
        assert target[1].shape == (2, 16, dims) and target['cls'].shape == (2, dims)
        # LN targets: zero mean, unit variance per token
        assert target[1].mean(-1).abs().max() < 1e-4
    assert math.isclose(targets[2][1].std(-1, unbiased=False).mean().item(), 1.0, rel_tol=1e-3)


def test_chunked_forward_equals_the_whole_batch():
    teacher = TimmTeacher(family='dinov2', arch='vit_small_patch14_dinov2', img_size=70,
                          model_kwargs=DINO_TINY, out_layers=[0])
    chunked = TimmTeacher(family='dinov2', arch='vit_small_patch14_dinov2', img_size=70,
                          model_kwargs=DINO_TINY, out_layers=[0], forward_chunk=2)
    chunked.backbone.load_state_dict(teacher.backbone.state_dict())
    x = torch.randn(5, 3, 64, 64)
    whole, parts = teacher(x), chunked(x)
    for key in ('cls', 'patch'):
        torch.testing.assert_close(parts[key], whole[key], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(parts['layers'][0], whole['layers'][0], atol=1e-5, rtol=1e-5)


def test_timm_teacher_stays_frozen_and_out_of_the_state_dict():
    teacher = TimmTeacher(family='siglip', img_size=64, model_kwargs=SIGLIP_TINY)
    parent = nn.Sequential(nn.Linear(2, 2), teacher).train()
    parent.requires_grad_(True)
    assert list(teacher.parameters()) == [] and list(teacher.state_dict()) == []
    assert not teacher.backbone.training
    assert all(not p.requires_grad for p in teacher.backbone.parameters())
    out = teacher(torch.randn(1, 3, 64, 64, requires_grad=True))
    assert out['cls'].grad_fn is None and out['patch'].grad_fn is None


# ------------------------------------------------------- the paper's families, larger sizes
@pytest.mark.parametrize('fmt, arch, timm_arch, patch', [
    ('mae', 'large', 'vit_large_patch16_224', 16),   # mae_pretrain_vit_large.pth
    ('mae', 'huge', 'vit_huge_patch14_224', 14),     # mae_pretrain_vit_huge.pth
    ('ibot', 'large', 'vit_large_patch16_224', 16),  # iBOT ViT-L/16 checkpoint_teacher.pth
])
@pytest.mark.slow
def test_vit_large_and_huge_teachers_of_the_paper_families_load(fmt, arch, timm_arch, patch):
    """The published ViT-L / ViT-H layouts (timm names, as the authors' code writes them)
    fill FrozenViTTeacher's ViT-L / ViT-H exactly; shapes only, on the meta device."""
    import timm

    from dmt_mm.checkpoint.vit_layouts import load_vit_weights
    with torch.device('meta'):
        encoder = timm.create_model(timm_arch, pretrained=False, num_classes=0).state_dict()
        teacher = FrozenViTTeacher(backbone=dict(arch=arch, img_size=224, patch_size=patch),
                                   checkpoint_format=fmt)
    if fmt == 'mae':
        published = {'model': encoder}
    else:
        published = {'state_dict': dict(encoder, masked_embed=torch.empty(1024, device='meta'))}
    found = load_vit_weights(teacher.backbone, published, fmt=fmt)
    assert found.fmt == fmt and len(found.state_dict) == len(encoder)
    assert teacher.patch_size == patch and teacher.num_layers == {'large': 24, 'huge': 32}[arch]


@pytest.mark.slow
def test_teachers_384_to_1536_wide_get_heads_of_their_own_width():
    """DMT with DINOv2-S/14 (384), OpenAI CLIP-L/14 (1024) and DINOv2-g/14 (1536) teachers
    beside a ViT-S student: each TFD head and SFD adaptor ends at its teacher's width
    (built on the meta device: shapes only)."""
    from mmpretrain.registry import MODELS

    import dmt_mm.models  # noqa: F401
    teachers = [dict(type='TimmTeacher', name='dinov2_s', family='dinov2',
                     arch='vit_small_patch14_dinov2'),
                dict(type='TimmTeacher', name='clip_l', family='openai_clip',
                     arch='vit_large_patch14_clip_quickgelu_224'),
                dict(type='TimmTeacher', name='dinov2_g', family='dinov2',
                     arch='vit_giant_patch14_dinov2')]
    with torch.device('meta'):
        model = MODELS.build(dict(
            type='DMT', backbone=dict(type='DMTViT', arch='vit-small', img_size=224),
            target_generator=dict(teachers=teachers, allow_random_teachers=True),
            data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=list(IMAGENET_MEAN),
                                   std=list(IMAGENET_STD), to_rgb=True)))
    widths = dict(dinov2_s=384, clip_l=1024, dinov2_g=1536)
    for name, width in widths.items():
        head = model.head.tfd_heads[name]
        assert head.fc1.in_features == 384 and head.fc2.out_features == width
        assert model.head.sfd_adaptors[name].conv2.out_channels == width
    assert [t.num_layers for t in model.target_generator.teachers] == [12, 24, 40]
