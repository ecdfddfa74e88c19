"""Nothing lost, nothing silently wrong: atomic checkpoints, safe loading, exact resume,
the non-finite loss guard and clear errors for bad input."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import CONFIGS, REPO, TOOLS, run_tool

from dmt_mm.engine.checkpoint import AtomicLocalBackend
from dmt_mm.utils.safe_load import (TRUST_ENV, UntrustedCheckpointError, is_signed,
                                    safe_torch_load, write_signature)

TOY_MAE = CONFIGS / 'toy' / 'mae_vit-toy-p16_1xb8-20it_toyworld.py'


# --- atomic, signed checkpoints --------------------------------------------------------------
def test_atomic_put_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    target = tmp_path / 'iter_1.pth'
    backend = AtomicLocalBackend()
    backend.put(b'old complete checkpoint', target)
    assert is_signed(str(target))

    def broken_fsync(fd):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError, match='disk full'):
        backend.put(b'new checkpoint', target)
    assert target.read_bytes() == b'old complete checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_1.pth', 'iter_1.pth.sig']
    backend.remove(target)  # max_keep_ckpts clean-up removes the signature with it
    assert not list(tmp_path.iterdir())


def test_sigkill_during_save_never_leaves_a_truncated_checkpoint(tmp_path):
    """A child keeps saving a large checkpoint; we SIGKILL it at a random moment: the file
    under the checkpoint's name is always absent or complete and signed."""
    code = (
        'import sys, torch; sys.path.insert(0, %r)\n'
        'from dmt_mm.engine.checkpoint import AtomicLocalBackend\n'
        'import io\n'
        'b = AtomicLocalBackend(); i = 0\n'
        'while True:\n'
        '    buf = io.BytesIO(); torch.save({"w": torch.full((6_000_000,), float(i))}, buf)\n'
        '    b.put(buf.getvalue(), %r); i += 1\n') % (str(REPO), str(tmp_path / 'ckpt.pth'))
    rng = np.random.default_rng(0)
    target = tmp_path / 'ckpt.pth'
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, '-c', code])
        deadline = time.time() + 120
        while not (target.exists() and (tmp_path / 'ckpt.pth.sig').exists()):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.5))  # mid-way through one of the following saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(target, weights_only=True)
        assert state['w'].numel() == 6_000_000
        assert torch.all(state['w'] == state['w'][0])
        target.unlink()


# --- safe loading ----------------------------------------------------------------------------
class _Arbitrary:
    """A class an attacker-controlled pickle could carry."""


def test_official_style_checkpoint_with_namespace_loads_weights_only(tmp_path):
    path = tmp_path / 'mae_pretrain.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'args': argparse.Namespace(lr=1.0)}, path)
    loaded = safe_torch_load(str(path))
    assert loaded['args'].lr == 1.0 and torch.equal(loaded['model']['w'], torch.ones(2))


def test_untrusted_pickle_is_refused_with_the_opt_in(tmp_path, monkeypatch):
    path = tmp_path / 'odd.pth'
    torch.save({'state_dict': {}, 'obj': _Arbitrary()}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError) as err:
        safe_torch_load(str(path))
    assert TRUST_ENV in str(err.value)
    monkeypatch.setenv(TRUST_ENV, str(tmp_path))  # explicit opt-in for that folder
    assert isinstance(safe_torch_load(str(path))['obj'], _Arbitrary)


def test_signature_binds_the_content(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path = tmp_path / 'run.pth'
    torch.save({'obj': _Arbitrary()}, path)
    write_signature(str(path))
    assert isinstance(safe_torch_load(str(path))['obj'], _Arbitrary)
    torch.save({'obj': _Arbitrary(), 'other': 1}, path)  # replaced after signing
    assert not is_signed(str(path))
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(str(path))


# --- exact resume after SIGKILL --------------------------------------------------------------
RESUMABLE_CFG = """
_base_ = [{base!r}]
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls', 'dmt_mm.engine',
                               'support_hooks'], allow_failed_imports=False)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='PerSampleSeedSampler',
                 sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(_delete_=True, type='PerSampleSeedDataset',
                 dataset={{{{_base_.train_dataloader.dataset}}}}))
train_cfg = dict(max_iters=12)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=12, by_epoch=False, begin=0, end=12)]
default_hooks = dict(checkpoint=dict(interval=4, max_keep_ckpts=-1), logger=dict(interval=1))
custom_hooks = [dict(type='IterationSeedHook'), dict(type='SlowDownHook', seconds={sleep})]
"""


def _write_cfg(tmp_path, name, sleep):
    path = tmp_path / name
    path.write_text(RESUMABLE_CFG.format(base=str(TOY_MAE), sleep=sleep))
    return path


def _weights(path):
    return safe_torch_load(str(path))['state_dict']


def test_sigkill_then_resume_ends_with_the_same_weights(small_toy_world, tmp_path):
    cfg = _write_cfg(tmp_path, 'resumable.py', sleep=0.4)
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    run_tool([TOOLS / 'train.py', cfg, '--work-dir', straight], cwd=small_toy_world)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
    proc = subprocess.Popen([sys.executable, str(TOOLS / 'train.py'), str(cfg), '--work-dir',
                             str(killed)], cwd=small_toy_world, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / 'iter_4.pth.sig').exists():
        assert proc.poll() is None and time.time() < deadline, 'run ended before iter 4'
        time.sleep(0.05)
    time.sleep(0.6)  # now somewhere in iterations 5-6: between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / 'iter_12.pth').exists()

    out = run_tool([TOOLS / 'train.py', cfg, '--work-dir', killed, '--resume'],
                   cwd=small_toy_world)
    assert 'resumed' in out.stdout.lower()
    a, b = _weights(straight / 'iter_12.pth'), _weights(killed / 'iter_12.pth')
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_resume_skips_a_checkpoint_that_is_not_complete(small_toy_world, tmp_path):
    from dmt_mm.engine.launch import find_resume_checkpoint
    work = tmp_path / 'w'
    work.mkdir()
    good = work / 'iter_4.pth'
    AtomicLocalBackend().put(b'complete', good)
    bad = work / 'iter_8.pth'
    bad.write_bytes(b'trunc')  # e.g. written by a tool without the atomic backend
    (work / 'last_checkpoint').write_text(str(bad))
    assert find_resume_checkpoint(str(work)) == str(good)


# --- non-finite loss guard -------------------------------------------------------------------
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small_toy_world, tmp_path):
    cfg = tmp_path / 'nan.py'
    cfg.write_text(
        f"_base_ = [{str(TOY_MAE)!r}]\n"
        "custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls', "
        "'support_hooks'], allow_failed_imports=False)\n"
        "default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1))\n"
        "custom_hooks = [dict(type='PoisonWeightsHook', at_iter=4)]\n")
    work = tmp_path / 'work'
    proc = run_tool([TOOLS / 'train.py', cfg, '--work-dir', work], cwd=small_toy_world,
                    check=False)
    assert proc.returncode != 0
    assert 'non-finite loss at iteration 4' in proc.stdout and "'loss'" in proc.stdout
    assert (work / 'iter_2.pth').exists() and not (work / 'iter_4.pth').exists()
    assert all(torch.isfinite(v).all() for v in _weights(work / 'iter_2.pth').values())


# --- bad input catalogue ---------------------------------------------------------------------
def test_missing_data_root_names_the_field_and_the_fix(tmp_path):
    cfg = CONFIGS / 'toy' / 'mae_vit-toy-p16_1xb8-20it_toyworld.py'
    proc = run_tool([TOOLS / 'train.py', cfg, '--work-dir', tmp_path / 'w', '--cfg-options',
                     'train_dataloader.dataset.type=mmpretrain.CustomDataset',
                     'train_dataloader.dataset.data_root=data/nowhere/'],
                    cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "train_dataloader.dataset: data_root 'data/nowhere/' does not exist" in proc.stdout
    assert '--cfg-options train_dataloader.dataset.data_root=' in proc.stdout


def test_empty_dataset_is_named(tmp_path):
    (tmp_path / 'data' / 'empty' / 'images').mkdir(parents=True)
    proc = run_tool([TOOLS / 'train.py', TOY_MAE, '--work-dir', tmp_path / 'w',
                     '--cfg-options', 'train_dataloader.dataset.type=mmpretrain.CustomDataset',
                     'train_dataloader.dataset.data_root=data/empty/',
                     'train_dataloader.dataset.data_prefix=images'],
                    cwd=tmp_path, check=False)
    assert proc.returncode != 0
    # mmpretrain's own message already names the folder; DatasetSanityHook covers the
    # dataset types that would start training on nothing
    assert 'data/empty/images' in proc.stdout
    assert 'no samples' in proc.stdout or 'Found 0 files' in proc.stdout


def test_resume_with_an_incompatible_checkpoint_is_refused(small_toy_world, tmp_path):
    work = tmp_path / 'mae'
    run_tool([TOOLS / 'train.py', TOY_MAE, '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'],
             cwd=small_toy_world)
    wider = tmp_path / 'wider.py'
    wider.write_text(f"_base_ = [{str(TOY_MAE)!r}]\n"
                     "model = dict(backbone=dict(arch=dict(embed_dims=96, num_layers=2, "
                     "num_heads=2, feedforward_channels=128)), neck=dict(embed_dim=96))\n")
    proc = run_tool([TOOLS / 'train.py', wider, '--work-dir', tmp_path / 'w2', '--resume',
                     work / 'iter_2.pth'], cwd=small_toy_world, check=False)
    assert proc.returncode != 0
    assert 'the checkpoint does not match the model of this config' in proc.stdout
    assert 'wrong shapes' in proc.stdout


def test_unregistered_type_names_type_and_registry(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text(f"_base_ = [{str(TOY_MAE)!r}]\nmodel = dict(type='NoSuchAlgorithm')\n")
    proc = run_tool([TOOLS / 'train.py', bad, '--work-dir', tmp_path / 'w'], cwd=tmp_path,
                    check=False)
    assert proc.returncode != 0
    assert 'NoSuchAlgorithm is not in the mmpretrain::model registry' in proc.stdout


def test_corrupt_image_is_skipped_with_a_count_or_fails_by_config(tmp_path):
    from dmt_mm.datasets import LoadImageOrSkip
    from dmt_mm.datasets.robust_loading import CORRUPT_COUNTS
    good, bad = tmp_path / 'good.png', tmp_path / 'bad.png'
    import cv2
    cv2.imwrite(str(good), np.zeros((8, 8, 3), np.uint8))
    bad.write_bytes(good.read_bytes()[:20])  # truncated PNG
    before = CORRUPT_COUNTS['skipped']
    skip = LoadImageOrSkip(on_corrupt='skip')
    assert skip(dict(img_path=str(good)))['img'].shape == (8, 8, 3)
    assert skip(dict(img_path=str(bad))) is None
    assert CORRUPT_COUNTS['skipped'] == before + 1
    with pytest.raises(OSError, match="cannot read image .*bad.png.*on_corrupt='skip'"):
        LoadImageOrSkip(on_corrupt='error')(dict(img_path=str(bad)))


def test_label_values_beyond_the_class_count_are_named():
    from dmt_mm.datasets import CheckLabelRange
    check = CheckLabelRange(num_classes=6)
    ok = np.array([[0, 5], [255, 2]], np.uint8)
    assert check(dict(gt_seg_map=ok))['gt_seg_map'] is ok
    with pytest.raises(ValueError, match=r'holds values \[7, 200\] beyond the 6 classes'):
        check(dict(gt_seg_map=np.array([[7, 200], [255, 1]], np.uint8), seg_map_path='x.png'))


def test_coco_category_ids_out_of_range_are_named(tmp_path):
    from mmdet.registry import DATASETS

    import dmt_mm.datasets.coco  # noqa: F401
    ann = dict(images=[dict(id=1, file_name='a.png', width=8, height=8)],
               categories=[dict(id=1, name='circle')],
               annotations=[dict(id=5, image_id=1, category_id=9, bbox=[0, 0, 4, 4],
                                 area=16, iscrowd=0, segmentation=[[0, 0, 4, 0, 4, 4]])])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r'\(annotation id, category_id: \[\(5, 9\)\]\)'):
        DATASETS.build(dict(type='ValidatedCocoDataset', ann_file=str(path),
                            data_prefix=dict(img=str(tmp_path)),
                            metainfo=dict(classes=('circle',)), pipeline=[]))


def test_per_sample_seeding_gives_each_pass_its_own_augmentation_on_any_world_size():
    """Sample i of pass p gets the same virtual index on 1 rank and on 2 ranks, and a new
    pass gets a new one -- for epoch-based and infinite samplers."""
    from dmt_mm.engine.determinism import PerSampleSeedDataset, PerSampleSeedSampler

    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return i

    def stream(world, rank, sampler_type, count):
        dataset = PerSampleSeedDataset(Items(), seed=0)
        sampler = PerSampleSeedSampler.__new__(PerSampleSeedSampler)
        inner = dict(type=sampler_type, shuffle=True)
        import unittest.mock as mock
        with mock.patch('mmengine.dataset.sampler.get_dist_info', return_value=(rank, world)):
            PerSampleSeedSampler.__init__(sampler, dataset, sampler=inner, seed=3)
        out = []
        while len(out) < count:
            for value in sampler:
                out.append(value)
                if len(out) == count:
                    break
        return out

    for sampler_type in ('DefaultSampler', 'InfiniteSampler'):
        single = stream(1, 0, sampler_type, 12)
        r0, r1 = stream(2, 0, sampler_type, 6), stream(2, 1, sampler_type, 6)
        interleaved = [v for pair in zip(r0, r1) for v in pair]
        assert interleaved == single, sampler_type
        passes = [v // 6 for v in single]
        assert passes == [0] * 6 + [1] * 6, sampler_type
        assert sorted(v % 6 for v in single[:6]) == list(range(6))


# --- DDP equivalence ---------------------------------------------------------------------------
DDP_CFG = """
_base_ = [{base!r}]
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.datasets.toy_cls', 'dmt_mm.engine',
                               'support_hooks'], allow_failed_imports=False)
train_dataloader = dict(
    batch_size={batch},
    sampler=dict(_delete_=True, type='PerSampleSeedSampler',
                 sampler=dict(type='InfiniteSampler', shuffle=True)),
    dataset=dict(_delete_=True, type='PerSampleSeedDataset',
                 dataset={{{{_base_.train_dataloader.dataset}}}}))
train_cfg = dict(max_iters=6)
param_scheduler = []
# Adam divides by sqrt(v) + eps: for gradients that are zero up to rounding (the attention
# key bias is softmax-invariant) it turns summation-order noise into lr-sized steps; a larger
# eps keeps that noise at noise level without changing any real update materially.
optim_wrapper = dict(optimizer=dict(eps=1e-6))
default_hooks = dict(checkpoint=dict(interval=6))
custom_hooks = [dict(type='IterationSeedHook'), dict(type='RecordLossHook')]
"""


def test_two_rank_ddp_equals_one_process_with_the_same_global_batch(small_toy_world, tmp_path):
    """Same global batch (8 = 1 x 8 = 2 x 4) and seed, masking off: per-iteration losses
    (mean over ranks) and the final student weights agree within 1e-5."""
    base = sorted((CONFIGS / 'toy').glob('dmt_*.py'))[0]
    single_cfg, dist_cfg = tmp_path / 'single.py', tmp_path / 'dist.py'
    single_cfg.write_text(DDP_CFG.format(base=str(base), batch=8))
    dist_cfg.write_text(DDP_CFG.format(base=str(base), batch=4))
    single, dist = tmp_path / 'single', tmp_path / 'dist'
    run_tool([TOOLS / 'train.py', single_cfg, '--work-dir', single], cwd=small_toy_world)
    env = dict(os.environ, PYTHON=sys.executable, PORT='29531', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
    proc = subprocess.run(['bash', str(TOOLS / 'dist_train.sh'), str(dist_cfg), '2',
                           '--work-dir', str(dist)], cwd=small_toy_world, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = json.loads((single / 'losses_rank0.json').read_text())
    r0 = json.loads((dist / 'losses_rank0.json').read_text())
    r1 = json.loads((dist / 'losses_rank1.json').read_text())
    assert len(one) == len(r0) == len(r1) == 6
    for step, (a, b, c) in enumerate(zip(one, r0, r1)):
        for key in a:
            assert (b[key] + c[key]) / 2 == pytest.approx(a[key], abs=1e-5), (step, key)
    w1, w2 = _weights(single / 'iter_6.pth'), _weights(dist / 'iter_6.pth')
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5, msg=key)
    assert json.loads((dist / 'rank_consistency.json').read_text())['agree'] is True
