"""Frozen-feature probes: DINO's weighted k-NN (dmt_mm.models.probes) against a transcription
of DINO's own function, its preprocessing against DINO's torchvision transform, extraction
on two ranks against one process, the k-NN and dense linear probes through tools/test.py /
tools/train.py, and the ImageNet / ADE20K probe configs on the real fixtures."""
import copy
import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, TOOLS, run_tool, shared_data, start_from_student, student_kept_in
from mmengine.config import Config
from mmengine.registry import DefaultScope

PROBES = CONFIGS / 'benchmarks' / 'probes'
TOY_KNN = CONFIGS / 'toy' / 'knn_vit-toy-p16_k20-t0.07_toyworld-cls.py'
TOY_DENSE = CONFIGS / 'toy' / 'linear_vit-toy-p16_1xb8-200it_toyworld-128x128.py'
ONE_THREAD = {'OMP_NUM_THREADS': '1'}
TOY_ARCH = dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)


def dino_knn_classifier(train_features, train_labels, test_features, test_labels, k, T,
                        num_classes=1000):
    """facebookresearch/dino eval_knn.py ``knn_classifier`` (commit 7c446df5), transcribed
    (chunks of the test set, a one-hot buffer resized per chunk); also returns the per-class
    sums ``probs`` of every test image."""
    top1, top5, total = 0.0, 0.0, 0
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 100
    imgs_per_chunk = max(num_test_images // num_chunks, 1)
    retrieval_one_hot = torch.zeros(k, num_classes).to(train_features.device)
    all_probs = []
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx:min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx:min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes),
                                    distances_transform.view(batch_size, -1, 1)), 1)
        all_probs.append(probs)
        _, predictions = probs.sort(1, True)
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
    return top1 * 100.0 / total, top5 * 100.0 / total, torch.cat(all_probs)


def test_knn_vote_equals_dinos_knn_classifier():
    from mmpretrain.evaluation import Accuracy

    from dmt_mm.models.probes import knn_vote
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 32, generator=g)
    train_labels = torch.randint(0, 10, (500, ), generator=g)
    test_labels = torch.randint(0, 10, (300, ), generator=g)
    train = F.normalize(centres[train_labels] + 1.5 * torch.randn(500, 32, generator=g), dim=1)
    test = F.normalize(centres[test_labels] + 1.5 * torch.randn(300, 32, generator=g), dim=1)
    top1, top5, probs = dino_knn_classifier(train, train_labels, test, test_labels, 20, 0.07,
                                            num_classes=10)
    votes = knn_vote(test, train, train_labels, 20, 0.07, 10)
    torch.testing.assert_close(votes, probs, rtol=1e-5, atol=0)  # sums of exp(cos / 0.07)
    # what mmpretrain's Accuracy reports from the normalised votes (the model's scores)
    ours = Accuracy.calculate(votes / votes.sum(1, keepdim=True), test_labels, topk=(1, 5))
    assert 20 < top1 < 100  # a task that is neither trivial nor hopeless
    assert float(ours[0][0]) == pytest.approx(top1) and float(ours[1][0]) == pytest.approx(top5)


def test_extra_labellings_vote_like_dinos_classifier_given_each():
    """``extra_labels``: every labelling of the same images is scored from the same
    neighbours, as DINO's classifier scores it when given that labelling alone."""
    from dmt_mm.errors import ConfigError
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(36, 64, generator=g)
    train_ids = torch.randint(0, 36, (400, ), generator=g)  # 36 = 6 categories x 6 colours
    test_ids = torch.randint(0, 36, (200, ), generator=g)
    train = F.normalize(centres[train_ids] + 2.5 * torch.randn(400, 64, generator=g), dim=1)
    test = F.normalize(centres[test_ids] + 2.5 * torch.randn(200, 64, generator=g), dim=1)
    model, _ = toy_knn_model(extra_labels=dict(colour=6))
    model.register_buffer('prototype_vecs', train, persistent=False)
    model.register_buffer('prototype_labels', train_ids // 6, persistent=False)
    model.prototype_extra_labels = {'colour': train_ids % 6}
    scores = model.class_scores(test)
    for name, train_labels, test_labels in ((None, train_ids // 6, test_ids // 6),
                                            ('colour', train_ids % 6, test_ids % 6)):
        top1, _, probs = dino_knn_classifier(train, train_labels, test, test_labels, 20, 0.07,
                                             num_classes=6)
        torch.testing.assert_close(scores[name], probs / probs.sum(1, keepdim=True))
        assert 100 / 6 < top1 < 100, name
    with pytest.raises(ConfigError, match="extra_labels: 'colour' needs its number of classes"):
        toy_knn_model(extra_labels=dict(colour=0))
    with pytest.raises(ConfigError, match="'img_path' cannot name a data-sample field"):
        toy_knn_model(extra_labels=dict(img_path=3))
    # a labelled test sample without one of the labellings: one line naming the fix
    from mmpretrain.structures import DataSample
    model.prototype_inited = True
    with pytest.raises(ConfigError, match='the data samples carry no gt_label_colour'):
        model.predict(torch.zeros(1, 3, 64, 64), [DataSample().set_gt_label(0)])


def toy_knn_model(**kwargs):
    """The toy k-NN config's model, with ``kwargs`` merged (built in mmpretrain's scope)."""
    from mmpretrain.registry import MODELS

    import dmt_mm.models.probes  # noqa: F401
    cfg = Config.fromfile(str(TOY_KNN))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model_cfg), cfg


def image_folder(root, n_per_class, size=64, seed=0):
    """A tiny labelled image folder (two classes of random pictures)."""
    import cv2
    rng = np.random.default_rng(seed)
    for label in ('a', 'b'):
        (root / label).mkdir(parents=True)
        for i in range(n_per_class):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            image[:, :, 0] = 200 if label == 'a' else 40
            cv2.imwrite(str(root / label / f'{i}.png'), image)
    return root


def _extract_on_rank(rank, world_size, port, root, state, out):
    import torch.distributed as tdist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    tdist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        from mmengine.runner import Runner
        model, cfg = toy_knn_model()
        model.load_state_dict(state)
        prototype = copy.deepcopy(model.prototype)
        prototype.dataset = dict(type='CustomDataset', data_root=str(root), data_prefix='',
                                 pipeline=prototype.dataset.pipeline)
        prototype.batch_size = 2
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            loader = Runner.build_dataloader(prototype)
        feats, labels, _ = model._extract(loader)
        if rank == 0:
            torch.save(dict(feats=feats, labels=labels), out)
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow  # two spawned processes import the stack
def test_knn_features_of_two_ranks_equal_one_process(tmp_path):
    """7 images on 2 ranks: DefaultSampler pads the second shard with a repeated image; the
    gathered features are in dataset order and equal those of one process."""
    import mmpretrain.datasets  # noqa: F401
    import torch.multiprocessing as mp
    from mmengine.runner import Runner
    root = image_folder(tmp_path / 'images', 4)
    os.remove(root / 'b' / '3.png')  # 7 images
    torch.manual_seed(0)
    model, cfg = toy_knn_model()
    prototype = copy.deepcopy(model.prototype)
    prototype.dataset = dict(type='CustomDataset', data_root=str(root), data_prefix='',
                             pipeline=prototype.dataset.pipeline)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(prototype)
    feats, labels, _ = model._extract(loader)
    assert feats.shape == (7, 64) and labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(7))
    out = tmp_path / 'two_ranks.pth'
    mp.spawn(_extract_on_rank, args=(2, 29500 + os.getpid() % 1000, root, model.state_dict(),
                                     str(out)), nprocs=2, join=True)
    gathered = torch.load(out, weights_only=True)
    torch.testing.assert_close(gathered['feats'], feats)
    assert gathered['labels'].tolist() == labels.tolist()


@pytest.mark.slow
def test_knn_feature_cache_is_reused_only_for_the_same_weights(tmp_path):
    root = image_folder(tmp_path / 'images', 12)
    torch.manual_seed(0)
    cache = tmp_path / 'feats.pth'
    model, _ = toy_knn_model(feature_cache=str(cache))
    model.prototype.dataset = dict(type='CustomDataset', data_root=str(root), data_prefix='',
                                   pipeline=model.prototype.dataset.pipeline)
    model.prepare_prototype()
    first = model.prototype_vecs.clone()
    assert cache.is_file()
    saved = torch.load(cache, weights_only=True)
    saved['features'].zero_()  # a cache of these weights is read, not recomputed
    torch.save(saved, cache)
    model.prepare_prototype()
    assert torch.count_nonzero(model.prototype_vecs) == 0
    with torch.no_grad():  # other weights: the cache is refused and rewritten
        model.backbone.ln1.weight.mul_(2.0)
    model.prepare_prototype()
    torch.testing.assert_close(model.prototype_vecs, first)  # LN scale: same direction
    assert torch.count_nonzero(torch.load(cache, weights_only=True)['features']) > 0


def test_knn_preprocessing_equals_dinos_transform():
    """The k-NN configs' pipeline + data preprocessor give DINO's tensors (torchvision
    Resize(256, bicubic), CenterCrop(224), ToTensor, Normalize) on the real PNG photos."""
    import mmpretrain.datasets  # noqa: F401
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmpretrain.models import ClsDataPreprocessor
    from PIL import Image
    from torchvision import transforms as T
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(PROBES / 'knn_dmt-vit-small-p16_k20-t0.07_in1k.py'))
    pipeline = Compose(copy.deepcopy(cfg.test_dataloader.dataset.pipeline))
    preprocessor_cfg = dict(cfg.model.data_preprocessor)
    preprocessor_cfg.pop('type')
    preprocessor = ClsDataPreprocessor(**preprocessor_cfg)
    dino = T.Compose([T.Resize(256, interpolation=3), T.CenterCrop(224), T.ToTensor(),
                      T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    folder = shared_data('real_images_cc0')
    for name in ('astronaut.png', 'chelsea.png', 'coffee.png'):
        packed = pipeline(dict(img_path=str(folder / name)))
        ours = preprocessor(dict(inputs=[packed['inputs']], data_samples=[
            packed['data_samples']]), False)['inputs'][0]
        theirs = dino(Image.open(folder / name).convert('RGB'))
        assert ours.shape == theirs.shape == (3, 224, 224)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_bn_linear_head_is_batchnorm_then_1x1_conv():
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import dmt_mm.seg  # noqa: F401
    init_default_scope('mmseg')
    torch.manual_seed(0)
    head = MODELS.build(dict(type='BNLinearHead', in_channels=[8, 8], in_index=[0, 1],
                             input_transform='resize_concat', channels=16, num_classes=3,
                             dropout_ratio=0, norm_cfg=dict(type='BN')))
    for p in head.parameters():
        p.data.normal_()
    x = [torch.randn(2, 8, 6, 6), torch.randn(2, 8, 3, 3)]
    for train in (True, False):
        head.train(train)
        mean, var = head.bn.running_mean.clone(), head.bn.running_var.clone()
        logits = head(x)
        cat = torch.cat([x[0], F.interpolate(x[1], size=(6, 6), mode='bilinear',
                                             align_corners=False)], 1)
        if train:  # batch statistics (biased variance)
            mu, sigma2 = cat.mean((0, 2, 3)), cat.var((0, 2, 3), unbiased=False)
        else:
            mu, sigma2 = mean, var
        normed = (cat - mu.view(1, -1, 1, 1)) / torch.sqrt(sigma2.view(1, -1, 1, 1) + 1e-5)
        normed = normed * head.bn.weight.view(1, -1, 1, 1) + head.bn.bias.view(1, -1, 1, 1)
        expected = torch.einsum('bchw,kc->bkhw', normed, head.conv_seg.weight[:, :, 0, 0]) + \
            head.conv_seg.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='channels .* must equal the input channels'):
        MODELS.build(dict(type='BNLinearHead', in_channels=8, channels=16, num_classes=3))


def random_student(path, arch=TOY_ARCH, img_size=64, seed=0):
    from dmt_mm.checkpoint.backbone import save_backbone_checkpoint
    from dmt_mm.models.backbones import DMTViT
    torch.manual_seed(seed)
    vit = DMTViT(arch=arch, img_size=img_size, patch_size=16)
    vit.init_weights()
    save_backbone_checkpoint(vit.state_dict(), str(path))
    return {f'backbone.{k}': v for k, v in vit.state_dict().items()}


def toy_features(state, world, split, normalise=True):
    """(features, labels) of the toy world's single-object ``split`` computed here by PIL +
    torchvision + the ViT holding ``state`` (the toy probe configs' preprocessing)."""
    from PIL import Image
    from torchvision import transforms as T

    from dmt_mm.models.backbones import DMTViT
    vit = DMTViT(arch=TOY_ARCH, img_size=64, patch_size=16, out_type='cls_token')
    vit.eval()  # mmpretrain's BaseBackbone.train() returns None: no chaining
    vit.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()})
    transform = T.Compose([T.Resize(73, interpolation=3), T.CenterCrop(64), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    root = world / 'data' / 'toy_world' / 'cls'
    classes = sorted(p.name for p in (root / split).iterdir())
    files = [(f, i) for i, c in enumerate(classes)
             for f in sorted((root / split / c).glob('*.png'))]
    batch = torch.stack([transform(Image.open(f).convert('RGB')) for f, _ in files])
    with torch.no_grad():
        feats = vit(batch)[0]
    return (F.normalize(feats, dim=1) if normalise else feats), \
        torch.tensor([i for _, i in files])


@pytest.mark.slow
def test_toy_knn_probe_through_test_tool(small_toy_world, tmp_path):
    """tools/test.py on the toy k-NN config: top-1 equals DINO's classifier on features
    computed here by PIL + torchvision + the ViT; a second run reads the cached features."""
    state = random_student(tmp_path / 'student.pth')
    cache = tmp_path / 'feats.pth'
    args = [TOOLS / 'test.py', TOY_KNN, tmp_path / 'student.pth', '--work-dir',
            tmp_path / 'knn', '--cfg-options', f'model.feature_cache={cache}']
    first = run_tool(args, cwd=small_toy_world, env=ONE_THREAD)
    metrics = json.loads((tmp_path / 'knn' / 'test_metrics.json').read_text())
    second = run_tool(args, cwd=small_toy_world, env=ONE_THREAD)
    assert 'training features written to' in first.stdout
    assert 'training features read from' in second.stdout
    assert json.loads((tmp_path / 'knn' / 'test_metrics.json').read_text()) == metrics

    train, train_labels = toy_features(state, small_toy_world, 'train')
    test, test_labels = toy_features(state, small_toy_world, 'val')
    top1, top5, _ = dino_knn_classifier(train, train_labels, test, test_labels, 20, 0.07, 6)
    assert metrics['accuracy/top1'] == pytest.approx(top1, abs=1e-3)
    assert metrics['accuracy/top5'] == pytest.approx(top5, abs=1e-3)

    # more neighbours than training images: one line naming the fix, no traceback
    too_many = run_tool(args + ['model.k=100000'], cwd=small_toy_world, env=ONE_THREAD,
                        check=False)
    assert too_many.returncode == 1 and 'Traceback' not in too_many.stdout
    assert (f'error: k=100000 neighbours, but the training set has {len(train_labels)} '
            'images: lower model.k') in too_many.stdout


@pytest.mark.slow
def test_study_knn_config_scores_every_factor_in_one_pass(tmp_path):
    """The study's k-NN config (toy world v2) reports the category and, from the same pass,
    colour / texture / size: each top-1 equals DINO's classifier on features computed here,
    with that factor's labels read from the world's label files."""
    from dmt_mm.datasets import generate_toy_world
    from dmt_mm.datasets.toy_world import FACTORS, ToyWorldSpec
    generate_toy_world(str(tmp_path / 'data' / 'toy_world'), ToyWorldSpec(
        version=2, num_train=2, num_val=1, cls_per_class_train=5, cls_per_class_val=4))
    state = random_student(tmp_path / 'student.pth')
    run_tool([TOOLS / 'test.py', CONFIGS / 'toy' / 'pipeline' /
              'knn_dmt-vit-toy-p16_k20-t0.07_toyworld-cls.py', tmp_path / 'student.pth',
              '--work-dir', tmp_path / 'knn'], cwd=tmp_path, env=ONE_THREAD)
    metrics = json.loads((tmp_path / 'knn' / 'test_metrics.json').read_text())
    cls_root = tmp_path / 'data' / 'toy_world' / 'cls'
    for factor in ('category', 'colour', 'texture', 'size'):
        feats = {}
        for split in ('train', 'val'):
            features, _ = toy_features(state, tmp_path, split)
            labels = dict(line.split() for line in
                          (cls_root / 'meta' / f'{split}_{factor}.txt').read_text().splitlines())
            files = sorted((cls_root / split).glob('*/*.png'))  # toy_features' order
            feats[split] = features, torch.tensor([int(labels[f'{f.parent.name}/{f.name}'])
                                                   for f in files])
        # (the transcription's top-5 needs 5 classes; empty ones never win a top-1)
        top1, _, _ = dino_knn_classifier(*feats['train'], *feats['val'], 20, 0.07,
                                         max(5, len(FACTORS[factor])))
        key = 'accuracy/top1' if factor == 'category' else f'{factor}_accuracy/top1'
        assert metrics[key] == pytest.approx(top1, abs=1e-3), factor


@pytest.mark.slow
def test_toy_dense_linear_probe_trains_only_the_head(small_toy_world, tmp_path):
    """tools/train.py on the toy dense linear probe from a student file: after two
    iterations every student tensor is bit-identical, the head has moved, mIoU is logged."""
    state = random_student(tmp_path / 'student.pth', img_size=128)
    work_dir = tmp_path / 'dense'
    run_tool([TOOLS / 'train.py', TOY_DENSE, '--work-dir', work_dir, '--cfg-options',
              *start_from_student(tmp_path / 'student.pth'), 'train_cfg.max_iters=2',
              'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
              'default_hooks.checkpoint.max_keep_ckpts=2'], cwd=small_toy_world, env=ONE_THREAD)
    saved = student_kept_in([work_dir / f'iter_{i}.pth' for i in (1, 2)], state)
    assert not torch.equal(saved[0]['decode_head.conv_seg.weight'],
                           saved[1]['decode_head.conv_seg.weight'])
    assert not torch.equal(saved[0]['decode_head.bn.running_mean'],
                           saved[1]['decode_head.bn.running_mean'])
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in logs[-1].read_text().splitlines()]
    assert any('mIoU' in r for r in records)


# --- the benchmark probe configs on the real fixtures -------------------------------------
def cpu_config(path, out, **updates):
    """The config for a CPU run: fp32 (AMP needs a GPU), no loader workers, gloo."""
    cfg = Config.fromfile(str(path))
    if 'optim_wrapper' in cfg:
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
        cfg.optim_wrapper.pop('dtype', None)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.merge_from_dict(updates)
    cfg.dump(str(out))
    return out


@pytest.mark.slow
def test_imagenet_knn_config_runs_on_real_images(tmp_path):
    """The ViT-T k-NN config on an ImageNet-layout folder of real photos (6 training images
    in 3 classes, 2 validation images): one test iteration, accuracies in range."""
    photos = sorted(shared_data('real_images_cc0').glob('*.[pj][np]g')) + sorted(
        shared_data('coco_real_mini', 'images').glob('*.jpg'))
    assert len(photos) >= 8
    root = tmp_path / 'imagenet'
    lines = {'train': [], 'val': []}
    for i, photo in enumerate(photos[:8]):
        split, label = ('val', i % 3) if i >= 6 else ('train', i % 3)
        folder = root / split / f'n0000000{label}'
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
        lines[split].append(f'n0000000{label}/{photo.name} {label}')
    (root / 'meta').mkdir()
    for split, split_lines in lines.items():
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(split_lines) + '\n')
    random_student(tmp_path / 'student.pth', arch='vit-tiny', img_size=224)
    loader = dict(batch_size=8, num_workers=0)
    config = cpu_config(PROBES / 'knn_dmt-vit-tiny-p16_k20-t0.07_in1k.py', tmp_path / 'knn.py',
                        **{'model.k': 3, 'model.prototype': loader,
                           'model.prototype.dataset.data_root': str(root),
                           'test_dataloader': loader,
                           'test_dataloader.dataset.data_root': str(root)})
    proc = run_tool([TOOLS / 'test.py', config, tmp_path / 'student.pth', '--work-dir',
                     tmp_path / 'work'], cwd=tmp_path, env=ONE_THREAD)
    assert 'Epoch(test) [1/1]' in proc.stdout
    metrics = json.loads((tmp_path / 'work' / 'test_metrics.json').read_text())
    assert metrics['accuracy/top1'] in (0.0, 50.0, 100.0)  # 2 images
    assert metrics['accuracy/top5'] == 100.0  # 3 classes: every label is in the top 5


@pytest.mark.slow
def test_ade20k_linear_config_runs_on_the_real_sample(tmp_path):
    """The ViT-T ADE20K linear config on the 3 real ADE20K images: one training iteration
    (frozen student), then the slide test and IoUMetric over the 150 classes."""
    sample = shared_data('ade20k_sceneparse_sample')
    state = random_student(tmp_path / 'student.pth', arch='vit-tiny', img_size=224)
    prefix = dict(img_path='images', seg_map_path='annotations')
    updates = {'model.backbone.init_cfg.checkpoint': str(tmp_path / 'student.pth'),
               'train_cfg.max_iters': 1, 'train_cfg.val_interval': 1,
               'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=False)],
               'default_hooks.logger.interval': 1,
               'default_hooks.checkpoint.interval': 1}
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        updates.update({f'{loader}.batch_size': 1, f'{loader}.num_workers': 0,
                        f'{loader}.persistent_workers': False,
                        f'{loader}.dataset.data_root': str(sample),
                        f'{loader}.dataset.data_prefix': prefix})
    config = cpu_config(PROBES / 'linear_dmt-vit-tiny-p16_8xb2-amp-160k_ade20k-512x512.py',
                        tmp_path / 'linear.py', **updates)
    run_tool([TOOLS / 'train.py', config, '--work-dir', tmp_path / 'work'], cwd=tmp_path,
             env=ONE_THREAD)
    from dmt_mm.checkpoint.loading import safe_torch_load
    trained = safe_torch_load(str(tmp_path / 'work' / 'iter_1.pth'))['state_dict']
    for key, value in state.items():
        if key != 'backbone.pos_embed':  # resized from 224 to the 512 canvas at load time
            torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)
    logs = sorted((tmp_path / 'work').glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in logs[-1].read_text().splitlines()]
    miou = [r['mIoU'] for r in records if 'mIoU' in r]
    assert len(miou) == 1 and 0.0 <= miou[0] <= 100.0
