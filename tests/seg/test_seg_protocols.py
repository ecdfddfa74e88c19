"""The ADE20K protocols against their sources.

* every ADE20K benchmark config (mmseg's MAE / BEiT recipe and iBOT's recipe, T / S / B,
  single-scale and multi-scale + flip test) against the reference tables transcribed from
  open-mmlab/mmsegmentation and bytedance/ibot, through the protocol cards (tests/protocols.py);
* the multi-scale test resizes every image as the sources do (mmseg 0.x ``Resize`` with
  ``min_size``, iBOT's ``SETR_Resize``), for real and synthetic ADE20K image sizes;
* iBOT's normalised block outputs: the final norm applied to every output block;
* mmseg's MAE layer scales: a student checkpoint without them loads with them at 1.0.
"""
import copy

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIGS, SHARED_DATA
from mmengine.config import Config
from mmengine.registry import init_default_scope
from protocols import check_protocol

import dmt_mm.models  # noqa: F401
from dmt_mm.models.backbones.dmt_vit import DMTViT

SEG = CONFIGS / 'benchmarks' / 'mmseg'


@pytest.mark.slow
@pytest.mark.parametrize('protocol', ['ade20k_mae', 'ade20k_ibot', 'ade20k_linear'])
def test_configs_match_the_source_or_the_card_says_why(protocol):
    problems = check_protocol(protocol)
    assert not problems, '\n'.join(problems)


# --- multi-scale test sizes ----------------------------------------------------------------
def source_ms_size(h, w, ratio):
    """mmseg 0.x (and iBOT's SETR_Resize): MultiScaleFlipAug turns img_scale (2048, 512) into
    (int(2048 r), int(512 r)); Resize(keep_ratio=True, min_size=512) raises its short side to
    512, sets the image's short side to it keeping the aspect ratio, and mmcv.imrescale
    rounds; transcribed from mmsegmentation 0.x mmseg/datasets/pipelines/transforms.py."""
    scale = (int(2048 * ratio), int(512 * ratio))
    short = 512 if min(scale) < 512 else min(scale)
    new_h, new_w = (short * h / w, short) if h > w else (short, short * w / h)
    factor = min(max(new_h, new_w) / max(h, w), min(new_h, new_w) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def ade_sizes():
    """ADE20K image sizes: the shared validation sample when present, and typical shapes."""
    sizes = {(512, 683), (683, 512), (256, 341), (1536, 2048), (375, 500), (512, 512),
             (449, 600), (2048, 1536), (333, 500), (600, 800)}
    sample = SHARED_DATA / 'ade20k_sceneparse_sample' / 'images'
    for image in sorted(sample.glob('*.jpg')) if sample.exists() else []:
        sizes.add(cv2.imread(str(image)).shape[:2])
    return sorted(sizes)


@pytest.mark.parametrize('name', [
    'upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-512x512-ms',
    'upernet_dmt-vit-small-p16-f2p-ibot_4xb4-amp-160k_ade20k-512x512-ms'])
def test_multiscale_test_resizes_as_the_sources(name):
    import mmseg.datasets  # noqa: F401
    from mmseg.registry import TRANSFORMS
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(SEG / f'{name}.py'))
    tta = cfg.test_dataloader.dataset.pipeline[1]
    assert tta.type == 'TestTimeAug' and cfg.model.type == 'SegTTAModel'
    ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    resizes = [TRANSFORMS.build(copy.deepcopy(t)) for t in tta.transforms[0]]
    assert len(resizes) == len(ratios)
    for h, w in ade_sizes():
        image = np.zeros((h, w, 3), np.uint8)
        got = [resize(dict(img=image.copy(), img_shape=(h, w), ori_shape=(h, w)))['img'].shape[:2]
               for resize in resizes]
        assert got == [source_ms_size(h, w, r) for r in ratios], (h, w)
    # mmseg 1.x's own ADE20K tta_pipeline (Resize(scale_factor=r)) scales the original
    # image: the sizes this test would catch
    own = TRANSFORMS.build(dict(type='Resize', scale_factor=0.5, keep_ratio=True))
    shape = own(dict(img=np.zeros((683, 512, 3), np.uint8)))['img'].shape[:2]
    assert shape != source_ms_size(683, 512, 0.5)


# --- iBOT: normalised outputs ------------------------------------------------------------
ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)


@torch.no_grad()
def test_out_with_norm_applies_the_final_norm_to_every_output():
    from mmpretrain.models.backbones import VisionTransformer
    torch.manual_seed(0)
    ours = DMTViT(arch=ARCH, img_size=64, out_type='featmap', with_cls_token=True,
                  final_norm=True, out_with_norm=True, out_indices=[1, 3])
    for p in ours.parameters():
        p.normal_(0, 0.5)
    ours.eval()
    raw = VisionTransformer(arch=ARCH, img_size=64, out_type='raw', with_cls_token=True,
                            final_norm=False, out_indices=[1, 3])
    raw.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith('ln1')})
    raw.eval()
    x = torch.randn(2, 3, 80, 48)
    for out, tokens in zip(ours(x), raw(x)):
        normed = torch.nn.functional.layer_norm(tokens, (32, ), ours.ln1.weight, ours.ln1.bias,
                                                eps=1e-6)[:, 1:]  # iBOT: norm(x[:, 1:])
        torch.testing.assert_close(out, normed.transpose(1, 2).reshape(2, 32, 5, 3))
    with pytest.raises(ValueError, match='final_norm=True'):
        DMTViT(arch=ARCH, img_size=64, final_norm=False, out_with_norm=True)


# --- mmseg MAE: layer scales as new weights -----------------------------------------------
def test_student_without_layer_scales_loads_them_at_one(tmp_path):
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    student = DMTViT(arch='vit-tiny', img_size=224, patch_size=16)
    for p in student.parameters():
        p.data.normal_(0, 0.02)
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in student.state_dict().items()}},
               tmp_path / 'student.pth')
    cfg = Config.fromfile(str(SEG / 'upernet_dmt-vit-tiny-p16-f2p_8xb2-amp-160k_ade20k-512x512.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'student.pth')
    init_default_scope('mmseg')
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    state = backbone.state_dict()
    scales = {k for k in state if '.gamma' in k}
    assert len(scales) == 24  # attention and MLP branch of 12 blocks
    assert all(torch.equal(state[k], torch.ones(192)) for k in scales)
    assert set(state) - scales - set(student.state_dict()) == set()
