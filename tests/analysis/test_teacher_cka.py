"""Linear CKA (dmt_mm/analysis/cka.py) against hand computations and its defining
properties, and the teacher-diversity tool on an image folder: every teacher of three
families and the student, per block, into a heatmap PNG and a JSON."""
import json
import math

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TOOLS, run_tool

from dmt_mm.analysis.cka import (
    block_features,
    build_dmt,
    cka_matrix,
    linear_cka,
    model_block_features,
    spaced_blocks,
)

TOY = CONFIGS / 'toy' / 'dmt_vit-toy-p16_dinov2-clip-sam-toy_1xb16-40it_toyworld.py'


def random_features(n=50, p=12, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_of_a_representation_with_itself_is_one():
    x = random_features()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = random_features(seed=0), random_features(p=7, seed=1)
    q, _ = torch.linalg.qr(random_features(n=12, p=12, seed=2))   # a random orthogonal 12x12
    transformed = 3.7 * x @ q
    assert linear_cka(x, transformed) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(transformed, y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    # and not to an anisotropic scaling: the test above could fail
    scale = torch.diag(torch.linspace(0.1, 5.0, 12, dtype=torch.float64))
    assert linear_cka(x, x @ scale) < 0.95


def test_small_cases_computed_by_hand():
    # one feature each: linear CKA is the squared correlation. x_c = (-1, 0, 1),
    # y_c = (0, -1, 1): (x_c . y_c)^2 = 1, ||x_c||^2 = ||y_c||^2 = 2 -> 1 / (2 * 2) = 0.25
    x = torch.tensor([[1.], [2.], [3.]])
    y = torch.tensor([[1.], [0.], [2.]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)
    # X (centred) = [[1,0],[0,1],[-1,0],[0,-1]]: X^T X = 2 I, ||.||_F = 2 sqrt(2);
    # y = (1, 1, -1, -1): y^T X = (2, 2), squared norm 8; y^T y = 4:
    # CKA = 8 / (2 sqrt(2) * 4) = 1 / sqrt(2)
    x = torch.tensor([[1., 0.], [0., 1.], [-1., 0.], [0., -1.]])
    y = torch.tensor([[1.], [1.], [-1.], [-1.]])
    assert linear_cka(x, y) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    # a constant offset changes nothing (the features are centred first)
    assert linear_cka(x + 5, y - 2) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


def test_matrix_is_every_pair():
    feats = {f'm{k}.b0': random_features(p=4 + k, seed=k) for k in range(4)}
    feats['m0.b1'] = feats['m0.b0'] @ torch.linalg.qr(random_features(4, 4, seed=9))[0]
    result = cka_matrix(feats)
    assert result.rows == result.cols == list(feats)
    for i, a in enumerate(result.rows):
        for j, b in enumerate(result.cols):
            assert float(result.values[i, j]) == pytest.approx(linear_cka(feats[a], feats[b]),
                                                               abs=1e-12)
    torch.testing.assert_close(result.values, result.values.T)
    assert float(result.values[0, 4]) == pytest.approx(1.0)   # rotated copy
    student = {'student.b0': random_features(p=3, seed=20)}
    rect = cka_matrix(feats, student)
    assert rect.values.shape == (5, 1) and rect.cols == ['student.b0']
    with pytest.raises(ValueError, match='same samples'):
        cka_matrix({'a': random_features(n=5), 'b': random_features(n=6)})


def test_spaced_blocks_end_with_the_last():
    assert spaced_blocks(12, 4) == [2, 5, 8, 11]
    assert spaced_blocks(2, 4) == [0, 1]
    assert spaced_blocks(40, 1) == [39]


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """Six small RGB images of different structure (gradients, stripes, noise)."""
    import mmcv
    folder = tmp_path_factory.mktemp('cka_images')
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:80, 0:96]
    for k in range(6):
        img = np.stack([(xx * (k + 1)) % 256, (yy * (6 - k)) % 256,
                        ((xx + yy) * 3 + 40 * k) % 256], axis=-1).astype(np.float64)
        img += rng.normal(0, 20 * k, img.shape)
        mmcv.imwrite(np.clip(img, 0, 255).astype(np.uint8), str(folder / f'img_{k}.png'))
    return folder


def test_block_features_of_three_teacher_families_and_the_student(image_folder):
    feats = block_features(str(TOY), str(image_folder), random_teachers=True, blocks=2)
    assert list(feats) == ['dinov2.b0', 'dinov2.b1', 'clip.b0', 'clip.b1', 'sam.b0', 'sam.b1',
                           'student.b1', 'student.b3']
    # every model on the student's 4 x 4 grid: 6 images x 16 positions, each its own width
    widths = {'dinov2.b1': 48, 'clip.b1': 64, 'sam.b0': 32, 'sam.b1': 40, 'student.b3': 64}
    for name, width in widths.items():
        assert feats[name].shape == (6 * 16, width), name
    result = cka_matrix(feats)
    diag = torch.diagonal(result.values)
    torch.testing.assert_close(diag, torch.ones_like(diag))
    assert ((result.values > -1e-9) & (result.values < 1 + 1e-9)).all()


@pytest.mark.slow
def test_student_checkpoint_gives_the_trained_student(image_folder, tmp_path):
    model, _ = build_dmt(str(TOY), random_teachers=True, seed=1)
    state = {'state_dict': {f'backbone.{k}': v + 0.05 * torch.randn_like(v)
                            for k, v in model.backbone.state_dict().items()}}
    torch.save(state, tmp_path / 'student.pth')
    before = block_features(str(TOY), str(image_folder), random_teachers=True, seed=1)
    after = block_features(str(TOY), str(image_folder), random_teachers=True, seed=1,
                           checkpoint=str(tmp_path / 'student.pth'))
    torch.testing.assert_close(after['clip.b1'], before['clip.b1'])   # teachers unchanged
    model.backbone.load_state_dict({k[len('backbone.'):]: v
                                    for k, v in state['state_dict'].items()})
    images = torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64)])
    direct = model_block_features(model, images, blocks=4)['student.b3']
    via_file = block_features(str(TOY), images, random_teachers=True, seed=1,
                              checkpoint=str(tmp_path / 'student.pth'))['student.b3']
    torch.testing.assert_close(via_file, direct)
    assert not torch.allclose(after['student.b3'], before['student.b3'])
    torch.save({'state_dict': {'head.x': torch.zeros(1)}}, tmp_path / 'no_student.pth')
    with pytest.raises(ValueError, match='no backbone'):
        block_features(str(TOY), images, random_teachers=True,
                       checkpoint=str(tmp_path / 'no_student.pth'))


@pytest.mark.slow  # two runs of the tool in fresh processes
def test_tool_writes_heatmap_and_json(image_folder, tmp_path):
    out = tmp_path / 'cka'
    proc = run_tool([TOOLS / 'analysis_tools' / 'teacher_cka.py', TOY, image_folder,
                     '--out-dir', out, '--random-teachers', '--blocks', '2'], cwd=tmp_path)
    assert 'dinov2.b1' in proc.stdout and 'wrote' in proc.stdout
    data = json.loads((out / 'teacher_cka.json').read_text())
    assert data['rows'] == data['cols'] and len(data['rows']) == 8
    values = np.array(data['values'])
    np.testing.assert_allclose(np.diag(values), 1.0, atol=1e-6)
    np.testing.assert_allclose(values, values.T, atol=1e-6)
    assert data['samples'] == 6 * 16
    png = (out / 'teacher_cka.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
    bad = run_tool([TOOLS / 'analysis_tools' / 'teacher_cka.py', TOY, tmp_path / 'nowhere',
                    '--random-teachers'], cwd=tmp_path, check=False)
    assert bad.returncode == 1 and 'error:' in bad.stdout and 'Traceback' not in bad.stdout
