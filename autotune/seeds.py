"""Figures over independent seeds: a mean, and a paired ratio under common random numbers.

The open-loop experiments are transients, not steady states, so batch means within one run do not
apply; independent seeds do. Two policies run on the same seed see the same arrivals and requests
(common random numbers), so their ratio is taken seed by seed and the noise they share cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from autotune.intervals import MIN_REL_HALF_WIDTH, Interval, t_quantile

NAN = float("nan")


def mean_interval(values: Sequence[float], level: float) -> Interval:
    """Mean over seeds with its Student-t interval (NaN bounds with fewer than two finite values)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return Interval(NAN, NAN, NAN)
    m = float(v.mean())
    if len(v) < 2:
        return Interval(m, NAN, NAN)
    # never narrower than the resolution floor every interval of autotune has (autotune.intervals)
    h = max(t_quantile(level, len(v)) * float(v.std(ddof=1)) / math.sqrt(len(v)), MIN_REL_HALF_WIDTH * abs(m))
    return Interval(m, m - h, m + h)


def paired_ratio(num: Sequence[float], den: Sequence[float], level: float) -> Interval:
    """Geometric mean of ``num[i] / den[i]`` over seeds with its t interval on the log scale (at least ±1 %)."""
    logs = np.asarray(
        [math.log(a / b) for a, b in zip(num, den, strict=True) if a > 0 and b > 0 and math.isfinite(a / b)]
    )
    if len(logs) == 0:
        return Interval(NAN, NAN, NAN)
    m = float(logs.mean())
    if len(logs) < 2:
        return Interval(math.exp(m), NAN, NAN)
    h = max(t_quantile(level, len(logs)) * float(logs.std(ddof=1)) / math.sqrt(len(logs)), MIN_REL_HALF_WIDTH)
    return Interval(math.exp(m), math.exp(m - h), math.exp(m + h))


def excludes_one(iv: Interval) -> bool:
    """The ratio differs from 1 beyond the noise of the seeds."""
    return math.isfinite(iv.lo) and math.isfinite(iv.hi) and (iv.lo > 1 or iv.hi < 1)


def proportion_interval(k: int, n: int, level: float) -> Interval:
    """``k`` of ``n`` runs, with the exact (Clopper-Pearson) binomial interval: honest at 0 of 3."""
    if n <= 0:
        return Interval(NAN, NAN, NAN)
    a = 1 - level
    lo = float(stats.beta.ppf(a / 2, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1 - a / 2, k + 1, n - k)) if k < n else 1.0
    return Interval(k / n, lo, hi)
