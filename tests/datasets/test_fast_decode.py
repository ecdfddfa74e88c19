"""LoadRandomResizedCrop (dmt_mm/datasets/fast_decode.py): the crop boxes of mmpretrain's
RandomResizedCrop for the same random state, the images of LoadImageFromFile +
RandomResizedCrop up to resampling details, DCT-scaled decoding only where the crop allows
it, the robust-loading policy, and the GPU-decode path (run on CPU here) against the CPU
path."""
import mmpretrain.datasets  # noqa: F401
import numpy as np
import pytest
import torch
from conftest import TEST_DATA, shared_data
from mmengine.registry import init_default_scope
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from dmt_mm.datasets.fast_decode import JpegDecodeDataPreprocessor, dct_scale
from dmt_mm.errors import DataError

COCO_JPEG = TEST_DATA / 'coco_real_mini' / 'images' / '000000000785.jpg'
CROP = dict(scale=224, crop_ratio_range=(0.2, 1.0), interpolation='bicubic')


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmpretrain')


def fused(**kw):
    return TRANSFORMS.build(dict(type='LoadRandomResizedCrop', **dict(CROP, **kw)))


def reference(path, seed):
    """mmpretrain's pipeline: full decode (OpenCV), crop copy, pillow resize."""
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    rrc = TRANSFORMS.build(dict(type='RandomResizedCrop', backend='pillow', **CROP))
    np.random.seed(seed)
    return rrc(load(dict(img_path=str(path))))


def test_same_crop_boxes_as_random_resized_crop():
    """The same random state gives mmpretrain's box, for shapes that hit the first
    attempt, later attempts and the central-crop fallback (very elongated images)."""
    rrc = TRANSFORMS.build(dict(type='RandomResizedCrop', **CROP))
    t = fused()
    for h, w in [(427, 640), (640, 427), (300, 451), (64, 900), (1200, 80)]:
        for seed in range(25):
            np.random.seed(seed)
            top, left, ch, cw = rrc.rand_crop_params(np.zeros((h, w, 3), np.uint8))
            np.random.seed(seed)
            got = t.crop.rand_crop_params(type('S', (), {'shape': (h, w, 3)})())
            assert got == (top, left, ch, cw), (h, w, seed)


def test_output_matches_the_reference_pipeline_on_real_photos(tmp_path):
    photos = [COCO_JPEG]
    try:
        photos.append(shared_data('real_images_cc0', 'rocket.jpg'))
    except pytest.skip.Exception:
        pass
    t = fused()
    for path in photos:
        for seed in range(6):
            ref = reference(path, seed)
            np.random.seed(seed)
            out = t(dict(img_path=str(path)))
            assert out['img'].shape == ref['img'].shape == (224, 224, 3)
            assert out['img'].dtype == np.uint8
            assert out['ori_shape'] == Image.open(path).size[::-1]
            # same decoder (libjpeg-turbo), same filter; only the taps at the box edges see
            # real neighbours instead of a replicated border
            diff = np.abs(out['img'].astype(int) - ref['img'].astype(int))
            assert diff.mean() < 0.5 and np.median(diff) == 0, (path, seed, diff.mean())


def test_dct_scale_only_where_the_crop_stays_at_least_the_output():
    assert dct_scale((448, 448), (224, 224), 'JPEG') == 2
    assert dct_scale((447, 900), (224, 224), 'JPEG') == 1  # one axis would be upsampled
    assert dct_scale((1800, 1792), (224, 224), 'JPEG') == 8
    assert dct_scale((1000, 1000), (224, 224), 'PNG') == 1


def test_large_jpeg_decodes_at_reduced_size_close_to_the_full_decode(tmp_path):
    big = tmp_path / 'big.jpg'
    Image.open(COCO_JPEG).resize((2560, 1700), Image.BICUBIC).save(big, quality=92)
    scaled, full = fused(), fused(dct_scaling=False)
    seen = set()
    for seed in range(8):
        np.random.seed(seed)
        a = scaled(dict(img_path=str(big)))
        np.random.seed(seed)
        b = full(dict(img_path=str(big)))
        left, top, right, bottom = a['crop_box']
        assert a['crop_box'] == b['crop_box'] and b['dct_scale'] == 1
        assert a['dct_scale'] == dct_scale((bottom - top, right - left), (224, 224), 'JPEG')
        seen.add(a['dct_scale'])
        diff = np.abs(a['img'].astype(int) - b['img'].astype(int)).mean()
        assert diff < 4.0, (seed, a['dct_scale'], diff)
    assert seen & {2, 4}  # the scaled decode was exercised


def test_unreadable_files_follow_the_robust_loading_policy(tmp_path):
    bad = tmp_path / 'truncated.jpg'
    bad.write_bytes(COCO_JPEG.read_bytes()[:200])
    assert fused(on_corrupt='skip')(dict(img_path=str(bad))) is None
    with pytest.raises(DataError, match='truncated.jpg'):
        fused(on_corrupt='error')(dict(img_path=str(bad)))


def test_gpu_decode_path_gives_the_cpu_path_batch():
    """Worker side (bytes, box, flip) + JpegDecodeDataPreprocessor (decoding on the
    model's device: the CPU here) against the CPU pipeline through the DMT preprocessor."""
    from mmengine.dataset import default_collate, pseudo_collate
    from mmpretrain.models.utils import SelfSupDataPreprocessor
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    gpu_side = [fused(gpu_decode=True, flip_prob=0.5),
                TRANSFORMS.build(dict(type='PackJpegInputs'))]
    cpu_side = [fused(), TRANSFORMS.build(dict(type='RandomFlip', prob=0.0)),
                TRANSFORMS.build(dict(type='PackInputs'))]

    def run(steps, seed):
        np.random.seed(seed)
        results = dict(img_path=str(COCO_JPEG))
        for step in steps:
            results = step(results)
        return results
    gpu_items = [run(gpu_side, s) for s in range(4)]
    flips = [item['data_samples'].flip for item in gpu_items]
    cpu_items = []
    for s, flip in zip(range(4), flips):
        item = run(cpu_side, s)
        if flip:
            item['inputs'] = item['inputs'].flip(-1)
        cpu_items.append(item)
    assert gpu_items[0]['inputs'].dim() == 1  # bytes, not pixels
    got = JpegDecodeDataPreprocessor(**norm)(pseudo_collate(gpu_items), True)['inputs']
    ref = SelfSupDataPreprocessor(**norm)(default_collate(cpu_items), True)['inputs']
    got, ref = (x[0] if isinstance(x, list) else x for x in (got, ref))  # as DMT.loss reads
    assert got.shape == ref.shape == (4, 3, 224, 224)
    # torchvision's antialiased bicubic vs PIL's: a few grey levels apart at most
    assert (got - ref).abs().mean() < 0.03, (got - ref).abs().mean()
    assert torch.corrcoef(torch.stack([got.flatten(), ref.flatten()]))[0, 1] > 0.99


@pytest.mark.slow
def test_data_loader_rate_is_measured_through_one_worker_for_both_pipelines():
    """The tool's per-worker measurement runs the config's own data loader (launch defaults
    applied: per-sample seeding, robust loading) in one worker process, for the shipped
    pipeline and for mmpretrain's reference spelled out from it."""
    from conftest import CONFIGS
    from mmengine.config import Config

    from dmt_mm.analysis.data_throughput import (
        loader_throughput,
        reference_pipeline,
        train_pipeline,
        with_train_pipeline,
    )
    cfg = Config.fromfile(str(CONFIGS / 'dmt' /
                              'dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'))
    ref = reference_pipeline(train_pipeline(cfg))
    assert [t['type'] for t in ref] == ['LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
                                        'PackInputs']
    assert ref[1]['crop_ratio_range'] == (0.2, 1.0) and ref[1]['backend'] == 'pillow'
    for config, first in ((cfg, 'LoadRandomResizedCrop'),
                          (with_train_pipeline(cfg, ref), 'LoadImageOrSkip')):
        res = loader_throughput(config, [str(COCO_JPEG)], num_batches=1, batch_size=4,
                                warmup_batches=1)
        assert res['pipeline'][0] == first and res['num_images'] == 4
        assert res['images_per_s_per_worker'] > 0 and res['images_per_cpu_s'] > 0
