"""ADE20K transfer: configs, student loading, the SyncBN fallback, the real ADE20K pipeline
and IoUMetric against hand computations. (Toy training runs: tests/seg/test_seg_toy.py.)"""
import copy
import importlib
import os

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import CONFIGS, shared_data
from mmengine.config import Config
from mmengine.registry import init_default_scope

SEG = CONFIGS / 'benchmarks' / 'mmseg'
WIDTHS = {'tiny': 192, 'small': 384, 'base': 768}


def seg_config(arch, ms=False):
    name = f'upernet_dmt-vit-{arch}-p16-f2p_8xb2-amp-160k_ade20k-512x512{"-ms" if ms else ""}.py'
    return Config.fromfile(str(SEG / name))


def build_segmentor(model_cfg):
    import mmseg.models  # noqa: F401
    importlib.import_module('dmt_mm.models')
    importlib.import_module('dmt_mm.seg')
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    return MODELS.build(copy.deepcopy(model_cfg))


def make_student_checkpoint(path, arch='vit-tiny', seed=0):
    """A 224-px student in extract_student.py's format: {'state_dict': {'backbone.*'}}."""
    from dmt_mm.models.backbones.dmt_vit import DMTViT
    torch.manual_seed(seed)
    vit = DMTViT(arch=arch, img_size=224, patch_size=16)
    for p in vit.parameters():  # visibly non-default values everywhere
        p.data.normal_(0, 0.02)
    state = {f'backbone.{k}': v.clone() for k, v in vit.state_dict().items()}
    torch.save({'state_dict': state}, path)
    return {k[len('backbone.'):]: v for k, v in state.items()}


# --- configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', list(WIDTHS))
def test_seg_config_student_and_logit_shape(arch):
    """The student and the heads' widths (the recipe's values against its source:
    tests/seg/test_seg_protocols.py)."""
    cfg = seg_config(arch)
    width = WIDTHS[arch]
    assert cfg.model.backbone.type == 'mmpretrain.DMTViT'
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    assert cfg.model.decode_head.type == 'UPerHead' and cfg.model.auxiliary_head.type == 'FCNHead'
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    assert cfg.model_wrapper_cfg.type == 'SyncBNFallbackDDP'
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'

    # the neck/heads take the student's width; logits have 150 classes and the input's
    # size (shapes through the real code on the meta device: no memory, no FLOPs)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    model_cfg.test_cfg = dict(mode='whole')
    with torch.device('meta'):
        model = build_segmentor(model_cfg).eval()
        logits = model.inference(torch.randn(1, 3, 80, 112), [dict(
            ori_shape=(80, 112), img_shape=(80, 112), pad_shape=(80, 112))])
    assert model.backbone.embed_dims == width
    assert model.decode_head.in_channels == [width] * 4
    assert model.auxiliary_head.in_channels == width
    assert logits.shape == (1, 150, 80, 112)


def test_seg_slide_inference_on_cpu():
    """Real numbers through slide inference (two overlapping windows, a smaller window than
    the config's 512 to keep CPU time small)."""
    model_cfg = copy.deepcopy(seg_config('tiny').model)
    model_cfg.backbone.init_cfg = None
    model_cfg.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(43, 43))
    model = build_segmentor(model_cfg).eval()
    metas = [dict(ori_shape=(64, 96), img_shape=(64, 96), pad_shape=(64, 96))]
    with torch.no_grad():
        logits = model.inference(torch.randn(1, 3, 64, 96), metas)
    assert logits.shape == (1, 150, 64, 96)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('single', sorted(SEG.glob('*512x512.py')), ids=lambda p: p.name)
def test_multiscale_config_wraps_the_single_scale_model(single):
    """Every -ms config tests the single-scale config's model with the sources' scales and
    flips (values against the sources: tests/seg/test_seg_protocols.py)."""
    multi = Config.fromfile(str(single).replace('.py', '-ms.py'))
    assert multi.model.type == 'SegTTAModel'
    assert multi.model.module == Config.fromfile(str(single)).model
    transforms = multi.test_dataloader.dataset.pipeline[1].transforms
    assert [t['type'] for t in transforms[0]] == ['ResizeShortestEdge'] * 6
    assert [t['prob'] for t in transforms[1]] == [0.0, 1.0]  # with and without flip


def test_student_checkpoint_loads_with_position_embedding_resized_to_512(tmp_path):
    """init_cfg Pretrained(prefix='backbone.') on extract_student-format output: every student
    tensor arrives, the 14x14 position grid is bicubically resized to 32x32."""
    ckpt = tmp_path / 'student.pth'
    student = make_student_checkpoint(ckpt)
    cfg = seg_config('tiny')
    cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
    model = build_segmentor(cfg.model)
    model.init_weights()
    backbone = model.backbone.state_dict()
    # final_norm=False (raw block outputs): the student's ln1 is the only unused tensor; the
    # layer scales of mmseg's MAE recipe are new weights (tests/seg/test_seg_protocols.py)
    assert set(student) - set(backbone) == {'ln1.weight', 'ln1.bias'}
    assert {k for k in set(backbone) - set(student) if '.gamma' not in k} == set()
    for key, value in backbone.items():
        if key != 'pos_embed' and '.gamma' not in key:
            torch.testing.assert_close(value, student[key], rtol=0, atol=0, msg=key)
    # independent reference for the resize: cls position kept, patch grid interpolated
    src = student['pos_embed']
    grid = src[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(32, 32), mode='bicubic', align_corners=False)
    expected = torch.cat([src[:, :1], resized.flatten(2).transpose(1, 2)], dim=1)
    assert backbone['pos_embed'].shape == (1, 1 + 32 * 32, 192)
    torch.testing.assert_close(backbone['pos_embed'], expected)


# --- SyncBN fallback -------------------------------------------------------------------------
def _bn_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SyncBatchNorm(4),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1),
                              torch.nn.SyncBatchNorm(2))
    net[1].weight.data.uniform_(0.5, 1.5)
    net[1].bias.data.uniform_(-0.5, 0.5)
    return net


def test_seg_models_use_sync_bn():
    """The fallback matters: mmseg's neck and heads build SyncBN layers."""
    from dmt_mm.engine.sync_bn import sync_bn_layers
    cfg = seg_config('tiny')
    cfg.model.backbone.init_cfg = None
    names = sync_bn_layers(build_segmentor(cfg.model))
    assert any(n.startswith('neck.') for n in names)
    assert any(n.startswith('decode_head.') for n in names)
    assert any(n.startswith('auxiliary_head.') for n in names)


def test_sync_bn_converted_without_process_group(monkeypatch):
    from dmt_mm.engine import sync_bn
    monkeypatch.setattr(sync_bn.dist, 'is_initialized', lambda: False)
    net = _bn_net()
    params = list(net.parameters())
    x = torch.randn(2, 3, 6, 6)
    converted = sync_bn.convert_sync_bn_if_needed(net)
    assert converted == ['1', '4']
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in net.modules())
    assert all(a is b for a, b in zip(params, net.parameters()))  # optimizer stays valid
    # training-mode BN by hand: batch statistics, biased variance
    h = net[0](x)
    mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
    bn = net[1]
    expected = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) \
        + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(net[1](h), expected, rtol=1e-5, atol=1e-5)


def test_sync_bn_kept_where_it_can_synchronise(monkeypatch):
    from dmt_mm.engine import sync_bn
    monkeypatch.setattr(sync_bn.dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(sync_bn.dist, 'get_world_size', lambda group=None: 2)
    net = _bn_net()
    assert 'CPU' in sync_bn.sync_bn_fallback_reason(net).upper()  # 2 processes, on CPU
    monkeypatch.setattr(sync_bn, 'SYNC_BN_DEVICES', ('cpu', ))  # pretend CPU could sync
    assert sync_bn.convert_sync_bn_if_needed(net) == []
    assert isinstance(net[1], torch.nn.SyncBatchNorm)


@pytest.fixture
def gloo_group(tmp_path):
    """A one-process gloo group, as ``--launcher pytorch`` on a CPU machine creates."""
    if dist.is_initialized():
        pytest.skip('another test left a process group initialised in this session')
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_sync_bn_fallback_ddp_on_cpu_process_group(gloo_group):
    from mmengine.model import MMDistributedDataParallel

    from dmt_mm.engine.sync_bn import SyncBNFallbackDDP
    with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU'):
        MMDistributedDataParallel(_bn_net(), device_ids=None)  # the crash being fixed
    net = _bn_net()
    reference = copy.deepcopy(net)
    wrapped = SyncBNFallbackDDP(net, device_ids=None, broadcast_buffers=False)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in wrapped.modules())
    x = torch.randn(2, 3, 6, 6)
    out = wrapped(x)
    out.sum().backward()
    # numerically the same network: SyncBN in one process computes plain BN
    ref_out = torch.nn.functional.batch_norm(
        reference[0](x), None, None, reference[1].weight, reference[1].bias, True)
    torch.testing.assert_close(wrapped.module[1](wrapped.module[0](x)), ref_out)
    assert wrapped.module[0].weight.grad is not None


# --- the real ADE20K pipeline on the shared sample -------------------------------------------
def ade_sample():
    return shared_data('ade20k_sceneparse_sample')


def ade_dataset(pipeline):
    import mmseg.datasets  # noqa: F401
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    return DATASETS.build(dict(type='ADE20KDataset', data_root=str(ade_sample()),
                               data_prefix=dict(img_path='images', seg_map_path='annotations'),
                               pipeline=pipeline))


def mapped_label(png):
    """ADE20K's reduce_zero_label by hand: 0 ("other") -> 255 (ignored), k -> k - 1."""
    raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.int64)
    return np.where(raw == 0, 255, raw - 1)


def test_ade20k_test_pipeline_loads_pairs_with_reduced_labels():
    cfg = seg_config('small')
    dataset = ade_dataset(cfg.test_dataloader.dataset.pipeline)
    assert len(dataset) == 3 and len(dataset.metainfo['classes']) == 150
    root = ade_sample()
    for i in range(len(dataset)):
        sample = dataset[i]
        meta = sample['data_samples'].metainfo
        name = os.path.basename(meta['img_path']).replace('.jpg', '.png')
        expected = mapped_label(root / 'annotations' / name)
        gt = sample['data_samples'].gt_sem_seg.data.squeeze(0).numpy()
        assert gt.shape == expected.shape == tuple(meta['ori_shape'])
        np.testing.assert_array_equal(gt, expected)
        # Resize(2048, 512, keep_ratio): the short side becomes 512 unless the long one hits 2048
        h, w = meta['ori_shape']
        scale = min(2048 / max(h, w), 512 / min(h, w))
        assert sample['inputs'].shape[1:] == (int(h * scale + 0.5), int(w * scale + 0.5))
    first = mapped_label(root / 'annotations' / 'ADE_val_00000001.png')
    assert set(np.unique(first)) == {255, 0, 1, 2, 4, 6, 9, 17}  # LICENSE.md: {0,1,2,3,5,7,10,18}


def test_ade20k_train_pipeline_crops_keep_the_mapping():
    cfg = seg_config('tiny')
    dataset = ade_dataset(cfg.train_dataloader.dataset.pipeline)
    root = ade_sample()
    for i in range(len(dataset)):
        sample = dataset[i]
        name = os.path.basename(sample['data_samples'].img_path).replace('.jpg', '.png')
        gt = sample['data_samples'].gt_sem_seg.data
        assert gt.shape[-2:] == sample['inputs'].shape[-2:]
        assert max(gt.shape[-2:]) <= 512
        # nearest-neighbour resizing and cropping only ever produce labels of this image
        allowed = set(np.unique(mapped_label(root / 'annotations' / name)).tolist())
        assert set(gt.unique().tolist()) <= allowed


# --- IoUMetric against hand computations -----------------------------------------------------
def iou_metric(classes):
    from mmseg.evaluation import IoUMetric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=classes)
    return metric


def evaluate(metric, pairs):
    samples = [dict(pred_sem_seg=dict(data=torch.as_tensor(p)[None]),
                    gt_sem_seg=dict(data=torch.as_tensor(g)[None])) for p, g in pairs]
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_iou_metric_equals_a_hand_computation():
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 2, 2]])  # the last pixel is ignored
    # class 0: inter 1, union 2 | class 1: inter 2, union 3 | class 2: inter 1, union 1
    metrics = evaluate(iou_metric(('a', 'b', 'c')), [(pred, label)])
    assert metrics['mIoU'] == pytest.approx(72.22, abs=1e-4)  # (1/2 + 2/3 + 1) / 3
    assert metrics['aAcc'] == pytest.approx(80.0, abs=1e-4)  # 4 of 5 counted pixels
    assert metrics['mAcc'] == pytest.approx(83.33, abs=1e-4)  # (1/2 + 2/2 + 1/1) / 3


def test_iou_metric_on_ade20k_pipeline_labels_equals_numpy_and_official_values():
    """Predictions = the pipeline's labels shifted 8 px right (the sample's LICENSE.md lists
    the official scene-parsing reference values for exactly this perturbation)."""
    cfg = seg_config('tiny')
    dataset = ade_dataset(cfg.test_dataloader.dataset.pipeline)
    pairs = []
    for i in range(len(dataset)):
        gt = dataset[i]['data_samples'].gt_sem_seg.data.squeeze(0).numpy()
        pairs.append((np.roll(gt, 8, axis=1), gt))
    metrics = evaluate(iou_metric(dataset.metainfo['classes']), pairs)

    inter, union, area_label = np.zeros(150), np.zeros(150), np.zeros(150)
    correct = counted = 0
    for pred, gt in pairs:
        keep = gt != 255
        p, g = pred[keep], gt[keep]
        hit = p[p == g]
        i_c = np.bincount(hit, minlength=150)[:150]
        p_c = np.bincount(p[p < 150], minlength=150)[:150]
        g_c = np.bincount(g, minlength=150)[:150]
        inter, union, area_label = inter + i_c, union + p_c + g_c - i_c, area_label + g_c
        correct, counted = correct + len(hit), counted + len(g)
    with np.errstate(invalid='ignore', divide='ignore'):
        miou = np.nanmean(inter / union)
        macc = np.nanmean(inter / area_label)
    # IoUMetric rounds to 2 decimals in float32
    assert metrics['mIoU'] == pytest.approx(round(100 * miou, 2), abs=1e-4)
    assert metrics['aAcc'] == pytest.approx(round(100 * correct / counted, 2), abs=1e-4)
    assert metrics['mAcc'] == pytest.approx(round(100 * macc, 2), abs=1e-4)
    assert [metrics[k] for k in ('aAcc', 'mIoU', 'mAcc')] == pytest.approx([93.83, 68.58, 77.06],
                                                                          abs=1e-4)
