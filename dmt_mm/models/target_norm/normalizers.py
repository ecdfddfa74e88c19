"""Per-teacher target normalisation: without it the teacher with the largest feature scale
dominates the distillation loss (MAE, MoCo v3 and iBOT features differ by orders of magnitude).

Configs name them by registered type, ``dict(type='PHISTargetNorm', max_updates=1000)``; a
shorthand string stands for one type with its defaults:

* ``'none'`` -> :class:`IdentityTargetNorm`;
* ``'ln'`` -> :class:`LNTargetNorm`: LayerNorm over channels without affine (Feature
  Distillation / G2SD), stateless;
* ``'ema_std'`` -> :class:`EMAStdTargetNorm`: per-channel running mean / variance (UNIC),
  x -> (x - mean) / sqrt(var + eps);
* ``'phis'`` -> :class:`PHISTargetNorm`: PHI-S isotropic standardisation (Ranzinger et al.
  2024, RADIO): x -> H U^T (x - mu) / sigma with Sigma = U L U^T, sigma^2 = tr(Sigma) / D and
  H a normalised Hadamard matrix, so every output channel has variance 1.

The two statistical normalisers keep their statistics in float64 buffers (saved in the
algorithm's checkpoint), update them only in training mode, and all-reduce the batch
statistics across ranks (one collective per update) so every rank normalises identically.
Update rule, with n updates done so far: rate r = max(1 / (n + 1), 1 - momentum), i.e. an
exact running average over the first batches, then an EMA; ``momentum=1`` keeps the exact
average over every batch seen, and ``max_updates`` freezes the statistics after that many
updates (a warm-up estimation set). The running average of equal-size batches equals the
pooled statistics of those batches (mixture mean / covariance formula), which the tests use.
"""
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmpretrain.registry import MODELS

from ..utils import build_part


class _TargetNorm(nn.Module):
    """Base: ``forward(x (..., D)) -> float32 normalised x``; statistics update in training."""

    stateful = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._normalize(x.float())

    def _normalize(self, x):
        raise NotImplementedError


@MODELS.register_module()
class IdentityTargetNorm(_TargetNorm):
    """No normalisation (raw teacher features)."""

    def __init__(self, dims: Optional[int] = None):
        super().__init__()

    def _normalize(self, x):
        return x


@MODELS.register_module()
class LNTargetNorm(_TargetNorm):
    """LayerNorm over channels, no affine parameters."""

    def __init__(self, dims: Optional[int] = None, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def _normalize(self, x):
        return F.layer_norm(x, x.shape[-1:], eps=self.eps)


class _RunningStatsNorm(_TargetNorm):
    """Running mean and (co)variance of the tokens it normalises (see module docstring)."""

    stateful = True
    full_covariance = False

    def __init__(self, dims: int, momentum: float = 0.99, max_updates: Optional[int] = None,
                 eps: float = 1e-6):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'{type(self).__name__}: momentum must be in [0, 1], got {momentum}')
        self.dims = int(dims)
        self.momentum = float(momentum)
        self.max_updates = max_updates
        self.eps = eps
        self.register_buffer('num_updates', torch.zeros((), dtype=torch.long))
        self.register_buffer('mean', torch.zeros(dims, dtype=torch.float64))
        second = torch.eye(dims, dtype=torch.float64) if self.full_covariance else \
            torch.ones(dims, dtype=torch.float64)
        self.register_buffer('cov' if self.full_covariance else 'var', second)
        self._num_updates = 0  # host mirror of num_updates: no device sync in the hot path
        self._frozen = max_updates is not None and max_updates <= 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._num_updates = int(self.num_updates)
        self._frozen = self.max_updates is not None and self._num_updates >= self.max_updates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dims:
            raise ValueError(f'{type(self).__name__} was built for {self.dims} channels, got '
                             f'features with {x.shape[-1]}')
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.training and not self._frozen:
                self._update_outside_graph(x.detach().reshape(-1, self.dims))
            return self._normalize(x)

    @torch.compiler.disable
    def _update_outside_graph(self, x):
        """The statistics update runs eagerly: its host-side counter and schedule (and
        PHI-S's eigendecomposition) would make a compiled graph recompile every step. Once
        ``max_updates`` is reached the flag ``_frozen`` flips and the compiled forward holds
        the normalisation alone (one recompilation, no graph break)."""
        self.update(x)
        self._frozen = self.max_updates is not None and self._num_updates >= self.max_updates

    def _outer(self, a, b):
        return torch.outer(a, b) if self.full_covariance else a * b

    def batch_statistics(self, x: torch.Tensor):
        """Mean and (co)variance of the rows of ``x`` pooled over all ranks (float64)."""
        D = self.dims
        mean = x.mean(dim=0)
        xc = x - mean  # centred locally in float32: no cancellation
        scatter = xc.T @ xc if self.full_covariance else (xc * xc).sum(dim=0)
        n = x.shape[0]
        mean64 = mean.double()
        packed = torch.cat([mean64.new_full((1,), float(n)), n * mean64,
                            (scatter.double() + n * self._outer(mean64, mean64)).flatten()])
        all_reduce(packed)  # a no-op without a process group
        total = packed[0]
        bmean = packed[1:D + 1] / total
        second = packed[D + 1:].view_as(self.cov if self.full_covariance else self.var) / total
        return bmean, second - self._outer(bmean, bmean)

    @torch.no_grad()
    def update(self, x: torch.Tensor):
        bmean, bsecond = self.batch_statistics(x)
        n = self._num_updates
        rate = 1.0 if n == 0 else max(1.0 / (n + 1), 1.0 - self.momentum)
        new_mean = (1 - rate) * self.mean + rate * bmean
        d_old, d_new = self.mean - new_mean, bmean - new_mean
        old = self.cov if self.full_covariance else self.var
        mixed = (1 - rate) * (old + self._outer(d_old, d_old)) + \
            rate * (bsecond + self._outer(d_new, d_new))
        self.mean.copy_(new_mean)
        old.copy_(mixed)
        self._num_updates = n + 1
        self.num_updates.fill_(n + 1)
        self._after_update()

    def _after_update(self):
        pass


@MODELS.register_module()
class EMAStdTargetNorm(_RunningStatsNorm):
    """Per-channel standardisation with running statistics (UNIC-style).

    Args:
        dims: channels D.
        momentum: EMA decay of the statistics (weight of the old value), default 0.99.
        max_updates: stop updating after this many batches (None: never).
        eps: added to the variance.
    """

    def _normalize(self, x):
        return (x - self.mean.float()) * torch.rsqrt(self.var.float() + self.eps)


def _is_prime(n):
    return n > 1 and all(n % p for p in range(2, int(n ** 0.5) + 1))


def _paley(order):
    """Paley construction I: a Hadamard matrix of order q + 1 for a prime q = 3 (mod 4)."""
    q = order - 1
    residues = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if i in residues else -1 for i in range(1, q)])
    jacobsthal = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]
    S = np.zeros((order, order), dtype=np.int64)
    S[0, 1:] = 1
    S[1:, 0] = -1
    S[1:, 1:] = jacobsthal
    return np.eye(order, dtype=np.int64) + S


def hadamard_matrix(dims: int) -> Optional[np.ndarray]:
    """A normalised (orthogonal, entries +-1/sqrt(D)) Hadamard matrix of order ``dims``, built
    as Sylvester(2^a) x Paley(m), or None when this construction has none (e.g. odd D).
    Covers every ViT width in use: 192 = 16 x 12, 384 = 32 x 12, 768 = 64 x 12, 1024 = 2^10."""
    for power in range(int(np.log2(dims)) + 1):
        block, rest = 2 ** power, dims // 2 ** power
        if block * rest != dims:
            break
        if rest in (1, 2):
            core = np.array([[1]]) if rest == 1 else np.array([[1, 1], [1, -1]])
        elif rest % 4 == 0 and _is_prime(rest - 1) and (rest - 1) % 4 == 3:
            core = _paley(rest)
        else:
            continue
        H = core
        while H.shape[0] < dims:
            H = np.block([[H, H], [H, -H]])
        assert np.array_equal(H @ H.T, dims * np.eye(dims, dtype=H.dtype)), 'not Hadamard'
        return H.astype(np.float64) / np.sqrt(dims)
    return None


@MODELS.register_module()
class PHISTargetNorm(_RunningStatsNorm):
    """PHI-S: rotate into the covariance eigenbasis, spread the variance equally over all
    channels with a Hadamard matrix, divide by the mean standard deviation.

    Args:
        dims: channels D.
        momentum: 1.0 (default) keeps the exact average over all batches seen; < 1 an EMA.
        max_updates: freeze the statistics (and the transform) after this many batches: the
            warm-up estimation set. Default 500.
        refresh_interval: the D x D eigendecomposition runs after updates 1, 2, 4, 8, ... up to
            this interval, then every ``refresh_interval`` updates and at ``max_updates``
            (keeps it off most steps). Eigenvector signs are fixed (largest entry positive)
            so refreshes do not flip targets.
        eps: added to sigma^2.
        seed: seed of the random orthogonal matrix used where no Hadamard matrix of order D
            exists (then output variances are only approximately equal; a warning says so).
    """

    full_covariance = True

    def __init__(self, dims: int, momentum: float = 1.0, max_updates: Optional[int] = 500,
                 refresh_interval: int = 100, eps: float = 1e-6, seed: int = 0):
        super().__init__(dims, momentum=momentum, max_updates=max_updates, eps=eps)
        self.refresh_interval = max(1, int(refresh_interval))
        H = hadamard_matrix(dims)
        if H is None:
            print_log(f'PHISTargetNorm: no Hadamard matrix of order {dims} from the Sylvester x '
                      'Paley construction; using a random orthogonal matrix instead, so output '
                      'channel variances are only approximately equal', logger='current',
                      level=30)
            gen = np.random.default_rng(seed)
            H, _ = np.linalg.qr(gen.standard_normal((dims, dims)))
        self.register_buffer('rotation', torch.tensor(H, dtype=torch.float64), persistent=False)
        # y = (x - shift) @ proj; identity until the first update
        self.register_buffer('shift', torch.zeros(dims))
        self.register_buffer('proj', torch.eye(dims))

    def _due(self, n):
        if n == self.max_updates:
            return True
        if n <= self.refresh_interval:
            return n & (n - 1) == 0 or n == self.refresh_interval
        return n % self.refresh_interval == 0

    def _after_update(self):
        if self._due(self._num_updates):
            self.refresh()

    @torch.no_grad()
    def refresh(self):
        """Recompute the transform from the current statistics."""
        evals, U = torch.linalg.eigh(self.cov)
        rows = U.abs().argmax(dim=0)
        U = U * torch.sign(U[rows, torch.arange(self.dims, device=U.device)])
        sigma = torch.sqrt(self.cov.diagonal().sum() / self.dims + self.eps)
        W = self.rotation.to(U) @ U.T / sigma  # y = W (x - mu)
        self.proj.copy_(W.T)
        self.shift.copy_(self.mean)

    def _normalize(self, x):
        return (x - self.shift) @ self.proj


TARGET_NORM_SHORTHANDS = {'none': 'IdentityTargetNorm', 'ln': 'LNTargetNorm',
                          'ema_std': 'EMAStdTargetNorm', 'phis': 'PHISTargetNorm'}


def build_target_norm(spec: Union[str, dict], dims: int, where: str = 'target_norm'
                      ) -> nn.Module:
    """Build a normaliser for ``dims`` channels from a config dict with a registered type
    (``dict(type='PHISTargetNorm', max_updates=1000)``) or a shorthand string that stands
    for that type with its defaults (``'ln'``, ``'none'``, ``'ema_std'``, ``'phis'``)."""
    if isinstance(spec, str):
        if spec not in TARGET_NORM_SHORTHANDS:
            raise ValueError(f'{where}: unknown shorthand {spec!r}; use one of '
                             f'{sorted(TARGET_NORM_SHORTHANDS)} or dict(type=<a registered '
                             f'normaliser>, ...): {sorted(TARGET_NORM_SHORTHANDS.values())}')
        spec = dict(type=TARGET_NORM_SHORTHANDS[spec])
    if not isinstance(spec, dict):
        raise ValueError(f'{where}: expected a shorthand string or a config dict, got {spec!r}')
    if spec.get('type') in TARGET_NORM_SHORTHANDS:
        raise ValueError(f'{where}: type={spec["type"]!r} is a shorthand; inside a dict write '
                         f'type={TARGET_NORM_SHORTHANDS[spec["type"]]!r}')
    cls = MODELS.get(spec['type']) if isinstance(spec.get('type'), str) else None
    if cls is not None and not (isinstance(cls, type) and issubclass(cls, _TargetNorm)):
        raise ValueError(f'{where}: {spec["type"]} is not a target normaliser')
    return build_part(spec, where, filled=dict(dims=dims))
