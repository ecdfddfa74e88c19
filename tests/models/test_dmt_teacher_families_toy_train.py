"""A DMT run with teachers of three families -- DINOv2 (patch 14, 48 wide), OpenAI CLIP
(patch 8, 64 wide) and SAM (patch 16, 40-d neck at 128 px) -- trains on CPU through
tools/train.py from tiny files written by the authors' code in the containers they publish
(hub state dict, TorchScript archive, Sam state dict): every per-teacher loss falls, each
file is loaded as its family, the checkpoint holds no teacher. A file of the wrong family
stops the tool with one line naming the family to set."""
import json

import official_teachers as official
import pytest
from conftest import CONFIGS, TOOLS, run_tool

pytestmark = pytest.mark.slow  # one 40-iteration training run through tools/train.py

CONFIG = CONFIGS / 'toy' / 'dmt_vit-toy-p16_dinov2-clip-sam-toy_1xb16-40it_toyworld.py'
NAMES = ('dinov2', 'clip', 'sam')


@pytest.fixture(scope='module')
def teacher_files(tmp_path_factory):
    """The config's three teachers as their authors' code writes them (same sizes)."""
    import torch
    root = tmp_path_factory.mktemp('official_teachers')
    files = dict(dinov2=root / 'dinov2_vits14_pretrain.pth', clip=root / 'ViT-B-16.pt',
                 sam=root / 'sam_vit_b_01ec64.pth')
    torch.save(official.dinov2(embed_dim=48, num_heads=2, seed=10).state_dict(),
               files['dinov2'])
    official.save_openai_archive(official.clip(width=64, patch_size=8, seed=11), files['clip'])
    torch.save(official.sam(img_size=128, window=4, neck=40, seed=12).state_dict(),
               files['sam'])
    return files


def checkpoint_options(files):
    return ['--cfg-options', 'model.target_generator.allow_random_teachers=False'] + [
        f'model.target_generator.teacher_checkpoints.{name}={files[name]}' for name in NAMES]


@pytest.fixture(scope='module')
def toy_run(small_toy_world, teacher_files):
    work = small_toy_world / 'work_dirs' / 'dmt_teacher_families'
    proc = run_tool([TOOLS / 'train.py', CONFIG, '--work-dir', work,
                     *checkpoint_options(teacher_files)], cwd=small_toy_world)
    scalars = sorted(work.glob('*/vis_data/scalars.json'))[-1]
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return work, proc.stdout, [r for r in rows if 'loss' in r]


def test_each_teacher_loads_its_published_file_as_its_family(toy_run):
    _, log, _ = toy_run
    for family, layout, source in (('dinov2', 'dinov2', 'torch file'),
                                   ('openai_clip', 'clip', 'TorchScript archive'),
                                   ('sam', 'sam', 'torch file')):
        assert f'loaded {family} teacher weights' in log and \
            f'{layout} layout ({source})' in log, family


def _mean(rows, key):
    return sum(r[key] for r in rows) / len(rows)


def test_every_per_teacher_loss_falls(toy_run):
    _, _, rows = toy_run
    assert len(rows) == 40
    first, last = rows[:3], rows[-3:]
    for strategy in ('tfd', 'sfd'):
        for name in NAMES:
            key = f'loss_{strategy}_{name}'
            assert _mean(last, key) < 0.8 * _mean(first, key), (key, first, last)


def test_checkpoint_holds_no_teacher(toy_run):
    from dmt_mm.checkpoint import safe_torch_load
    work, _, _ = toy_run
    state = safe_torch_load(str(work / 'iter_40.pth'))['state_dict']
    assert any(k.startswith('head.tfd_heads.sam.') for k in state)
    assert not any('.teachers.' in k for k in state)


def test_wrong_family_file_stops_the_tool_in_one_line(small_toy_world, teacher_files):
    files = dict(teacher_files, sam=teacher_files['dinov2'])
    proc = run_tool([TOOLS / 'train.py', CONFIG, '--work-dir',
                     small_toy_world / 'work_dirs' / 'dmt_wrong_teacher',
                     *checkpoint_options(files)], cwd=small_toy_world, check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    errors = [line for line in proc.stdout.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and "family='dinov2'" in errors[0], proc.stdout[-3000:]
    assert 'Traceback' not in proc.stdout
