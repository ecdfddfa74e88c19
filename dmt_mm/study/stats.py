"""Statistics over seeds: mean and sample std of a cell, the t-interval of a mean, and the
paired difference of two methods run with the same seeds.

Pairing: seed ``s`` of every method shares the teachers, the data order of the transfer
runs and the probe initialisation of seed ``s``, so the difference ``x_s - ref_s`` cancels
what the seed does to both; its mean over seeds, with a t-interval (n - 1 degrees of
freedom), says whether the two methods differ beyond seed noise.
"""
import math
from typing import Dict, Mapping, Optional, Sequence

from scipy import stats as _scipy_stats


def mean_std(values: Sequence[float]):
    """(mean, sample std with n - 1; None for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError('mean_std of no values')
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_interval(values: Sequence[float], confidence: float = 0.95):
    """(low, high) of the two-sided t-interval of the mean; None for fewer than 2 values."""
    mean, std = mean_std(values)
    if std is None:
        return None
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * std / \
        math.sqrt(len(values))
    return mean - half, mean + half


def paired_difference(values: Mapping, reference: Mapping,
                      confidence: float = 0.95) -> Optional[Dict]:
    """Difference ``values - reference`` over the seeds both have (dicts seed -> value).

    Returns ``dict(n, seeds, mean, std, low, high, excludes_zero)`` (``low`` / ``high`` /
    ``std`` None and ``excludes_zero`` False when only one seed is shared), or None when no
    seed is shared."""
    seeds = sorted(set(values) & set(reference), key=lambda s: (s is None, s))
    if not seeds:
        return None
    diffs = [float(values[s]) - float(reference[s]) for s in seeds]
    mean, std = mean_std(diffs)
    interval = t_interval(diffs, confidence)
    low, high = interval if interval is not None else (None, None)
    return dict(n=len(diffs), seeds=list(seeds), mean=mean, std=std, low=low, high=high,
                excludes_zero=bool(interval is not None and (low > 0 or high < 0)))
