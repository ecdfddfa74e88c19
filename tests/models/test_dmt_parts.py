"""DMT building blocks against hand computations: distillation losses, target normalisers
(LN, identity, EMA standardisation, PHI-S) and the Hadamard construction."""
import math

import numpy as np
import pytest
import torch

import dmt_mm.models  # noqa: F401  (registers everything)
from dmt_mm.models.losses import (
    CosineDistillLoss,
    MixedDistillLoss,
    MSEDistillLoss,
    SmoothL1DistillLoss,
)
from dmt_mm.models.target_norm import (
    EMAStdTargetNorm,
    PHISTargetNorm,
    build_target_norm,
    hadamard_matrix,
)


def _smooth_l1(d, beta):
    """Elementwise Huber with threshold beta, written out (independent of torch's)."""
    a = abs(d)
    return 0.5 * d * d / beta if a < beta else a - 0.5 * beta


# ----------------------------------------------------------------------------- losses
def test_smooth_l1_matches_hand_computation():
    pred = torch.tensor([[[0.0, 3.0], [1.0, -1.0]]])    # (B=1, N=2, C=2)
    target = torch.tensor([[[1.0, 0.0], [1.0, 1.5]]])
    # token 0: d = (-1, 3): 0.5*1/2 = 0.25 and 3 - 1 = 2 -> mean 1.125
    # token 1: d = (0, -2.5): 0 and 2.5 - 1 = 1.5 -> mean 0.75
    loss = SmoothL1DistillLoss(beta=2.0)(pred, target)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx((1.125 + 0.75) / 2)
    # token weights: only token 1 counts
    weighted = SmoothL1DistillLoss(beta=2.0)(pred, target, torch.tensor([[0.0, 1.0]]))
    assert weighted.item() == pytest.approx(0.75)


def test_losses_on_random_tensors_against_loops():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 4, generator=g) * 2, torch.randn(3, 5, 4, generator=g)
    weight = (torch.rand(3, 5, generator=g) > 0.4).float()
    weight[:, 0] = 1
    p, t, w = pred.numpy(), target.numpy(), weight.numpy()
    sl1 = np.array([[np.mean([_smooth_l1(p[b, n, c] - t[b, n, c], 2.0) for c in range(4)])
                     for n in range(5)] for b in range(3)])
    mse = ((p - t) ** 2).mean(-1)
    cos = np.array([[1 - p[b, n] @ t[b, n] / np.linalg.norm(p[b, n]) / np.linalg.norm(t[b, n])
                     for n in range(5)] for b in range(3)])
    for loss, ref in [(SmoothL1DistillLoss(2.0), sl1), (MSEDistillLoss(), mse),
                      (CosineDistillLoss(), cos)]:
        np.testing.assert_allclose(loss(pred, target).numpy(), ref.mean(1), rtol=1e-5)
        np.testing.assert_allclose(loss(pred, target, weight).numpy(),
                                   (ref * w).sum(1) / w.sum(1), rtol=1e-5)
    mixed = MixedDistillLoss([dict(type='SmoothL1DistillLoss', beta=2.0),
                              dict(type='CosineDistillLoss')], weights=[1.0, 0.5])
    np.testing.assert_allclose(mixed(pred, target).numpy(), (sl1 + 0.5 * cos).mean(1), rtol=1e-5)
    # single tokens (B, C), e.g. CLS
    np.testing.assert_allclose(MSEDistillLoss()(pred[:, 0], target[:, 0]).numpy(), mse[:, 0],
                               rtol=1e-5)


def test_loss_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match='differ in shape'):
        MSEDistillLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


# ----------------------------------------------------------------------------- stateless norms
def test_ln_and_identity_norms():
    x = torch.randn(2, 7, 6) * 5 + 3
    ln = build_target_norm('ln', 6)(x)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as LayerNorm
    torch.testing.assert_close(ln, (x - mean) / torch.sqrt(var + 1e-6))
    assert torch.equal(build_target_norm('none', 6)(x), x)
    assert list(build_target_norm('ln', 6).buffers()) == []
    with pytest.raises(ValueError, match='unknown shorthand'):
        build_target_norm('zca', 6)


# ----------------------------------------------------------------------------- EMA std
def test_ema_std_first_update_is_the_batch_statistics():
    norm = EMAStdTargetNorm(4, momentum=0.99).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 4, generator=g) * torch.tensor([1., 2., 3., 4.]) + 7
    y = norm(x)
    flat = x.reshape(-1, 4).double()
    # statistics are accumulated in float64 from float32 tokens centred in float32
    torch.testing.assert_close(norm.mean, flat.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm.var, flat.var(0, unbiased=False), rtol=1e-6, atol=1e-6)
    yf = y.reshape(-1, 4)
    torch.testing.assert_close(yf.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(yf.var(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


def test_ema_std_running_average_then_ema_by_hand():
    """momentum 0.5: update 1 takes the batch (rate 1), update 2 averages equally (rate 1/2 =
    1 - 0.5) -> the pooled statistics of both batches; update 3 is an EMA with rate 0.5."""
    norm = EMAStdTargetNorm(3, momentum=0.5).train()
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(20, 3, generator=g) * s + s for s in (1.0, 3.0, 0.5))
    norm(a)
    norm(b)
    pooled = torch.cat([a, b]).double()
    torch.testing.assert_close(norm.mean, pooled.mean(0))
    torch.testing.assert_close(norm.var, pooled.var(0, unbiased=False))
    m_old, v_old = norm.mean.clone(), norm.var.clone()
    norm(c)
    cm, cv = c.double().mean(0), c.double().var(0, unbiased=False)
    m_new = 0.5 * m_old + 0.5 * cm
    v_new = 0.5 * (v_old + (m_old - m_new) ** 2) + 0.5 * (cv + (cm - m_new) ** 2)
    torch.testing.assert_close(norm.mean, m_new)
    torch.testing.assert_close(norm.var, v_new)
    assert int(norm.num_updates) == 3


def test_ema_std_converges_to_the_data_statistics():
    torch.manual_seed(0)
    mu, sigma = torch.tensor([5.0, -2.0, 0.0, 100.0]), torch.tensor([0.5, 3.0, 1.0, 10.0])
    norm = EMAStdTargetNorm(4, momentum=0.98).train()
    for _ in range(300):
        norm(torch.randn(256, 4) * sigma + mu)
    torch.testing.assert_close(norm.mean.float(), mu, atol=0.05 * sigma.max().item(), rtol=0)
    torch.testing.assert_close(norm.var.float().sqrt() / sigma, torch.ones(4), atol=0.05, rtol=0)
    # eval mode: statistics stay put
    before = norm.mean.clone()
    norm.eval()(torch.randn(64, 4) + 1000)
    assert torch.equal(norm.mean, before)


def test_running_stats_survive_a_state_dict_round_trip():
    norm = EMAStdTargetNorm(3, momentum=0.9).train()
    for _ in range(4):
        norm(torch.randn(8, 3))
    fresh = EMAStdTargetNorm(3, momentum=0.9).train()
    fresh.load_state_dict(norm.state_dict())
    assert fresh._num_updates == 4
    batch = torch.randn(8, 3)
    torch.testing.assert_close(fresh(batch), norm(batch))
    torch.testing.assert_close(fresh.mean, norm.mean)


# ----------------------------------------------------------------------------- PHI-S
@pytest.mark.slow
@pytest.mark.parametrize('dims', [1, 2, 12, 20, 64, 192, 384, 768])
def test_hadamard_matrix_is_orthogonal_with_equal_magnitudes(dims):
    H = hadamard_matrix(dims)
    assert H is not None
    np.testing.assert_allclose(H @ H.T, np.eye(dims), atol=1e-10)
    np.testing.assert_allclose(np.abs(H), 1 / math.sqrt(dims))


def test_hadamard_matrix_absent_for_odd_orders():
    assert hadamard_matrix(10) is None and hadamard_matrix(7) is None


def _anisotropic(n, dims, seed):
    """Correlated features with variances spanning 4 orders of magnitude, non-zero mean."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dims, dims, generator=g)
    scales = torch.logspace(-2, 2, dims)
    return (torch.randn(n, dims, generator=g) * scales) @ mix + 3 * torch.randn(dims, generator=g)


def test_phis_output_is_isotropic_on_the_estimation_set():
    dims = 12
    norm = PHISTargetNorm(dims, momentum=1.0, max_updates=4).train()
    batches = [_anisotropic(64, dims, seed) for seed in range(4)]
    for b in batches:
        norm(b)
    assert int(norm.num_updates) == 4
    data = torch.cat(batches).double()
    out = norm.eval()(data.float()).double()
    # every output channel has mean 0 and variance 1 over the estimation set
    torch.testing.assert_close(out.mean(0), torch.zeros(dims, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(dims, dtype=torch.float64),
                               atol=1e-3, rtol=0)
    # independent check of the map: H and U are orthogonal, so ||y|| = ||x - mu|| / sigma
    mu = data.mean(0)
    sigma = math.sqrt(((data - mu) ** 2).sum(1).mean().item() / dims)
    torch.testing.assert_close(out.norm(dim=1), (data - mu).norm(dim=1) / sigma, rtol=1e-4,
                               atol=1e-4)
    # frozen after max_updates
    proj = norm.proj.clone()
    norm.train()(_anisotropic(64, dims, 99) * 10)
    assert torch.equal(norm.proj, proj) and int(norm.num_updates) == 4


def test_phis_without_hadamard_falls_back_to_an_orthogonal_rotation():
    dims = 10
    norm = PHISTargetNorm(dims, momentum=1.0, max_updates=1).train()
    rot = norm.rotation
    torch.testing.assert_close(rot @ rot.T, torch.eye(dims, dtype=torch.float64))
    data = _anisotropic(400, dims, 3)
    out = norm(data).double()
    # still a whitening of the total variance: mean 0, average channel variance 1
    assert out.var(0, unbiased=False).mean().item() == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(out.mean(0), torch.zeros(dims, dtype=torch.float64), atol=1e-4,
                               rtol=0)


def test_phis_transform_refresh_schedule_and_stable_signs():
    norm = PHISTargetNorm(8, momentum=1.0, max_updates=None, refresh_interval=4).train()
    refreshed = []
    original = norm.refresh
    norm.refresh = lambda: (refreshed.append(norm._num_updates), original())
    for seed in range(9):
        norm(_anisotropic(32, 8, seed))
    assert refreshed == [1, 2, 4, 8]
    # a refresh from unchanged statistics gives the same transform (eigenvector signs fixed)
    original()
    proj = norm.proj.clone()
    norm.cov.mul_(1.0 + 1e-9)  # a negligible change must not flip any eigenvector
    original()
    torch.testing.assert_close(norm.proj, proj, atol=1e-5, rtol=1e-4)


def test_normalisers_keep_float32_under_autocast():
    norm = PHISTargetNorm(16, max_updates=2).train()
    x = _anisotropic(32, 16, 0).to(torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = norm(x)
    assert y.dtype == torch.float32 and norm.cov.dtype == torch.float64
