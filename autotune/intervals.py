"""Confidence intervals of a load point's figures by batch means over its steady-state window.

The measured window is cut into ``B`` batches of equal duration. Consecutive requests of one run
are correlated (they share queues), batches of a long enough duration are nearly independent, so
the spread *between* batches measures the uncertainty of the whole-window figure (docs/measurement.md):

* means and rates (ITL mean, hit rate, output tok/s): the whole-window ratio estimator, its
  standard error by linearisation over batches, a Student-t interval with ``B - 1`` degrees;
* percentiles (TTFT P50/P99, ITL P99, E2E P99): the standard error of the *fraction* of samples at
  or below the whole-window quantile, by batch means (never below its i.i.d. binomial value), and
  the interval mapped back through the empirical quantile function. This holds for a P99 even when
  a batch holds too few samples for a P99 of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")
# Resolution floor: no interval is narrower than ±1 % of its figure. Batch means capture the noise
# within one run; a deterministic simulator also has a seed effect (which requests share a template,
# collide in a step) that a long run of one seed does not average away: measured at ~1 % on TTFT P99
# between 20,000-request runs of different seeds (benchmarks/bench_measurement.py). A difference
# below it is not a difference autotune acts on.
MIN_REL_HALF_WIDTH = 0.01


@dataclass(frozen=True)
class Interval:
    """A figure and its two-sided confidence interval (NaN bounds: not enough data for one)."""

    value: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    @property
    def rel_half_width(self) -> float:
        """Half-width over the figure: the precision the run-length rule drives below a target."""
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.value == 0 or not math.isfinite(self.value):
            return math.inf
        return self.half_width / abs(self.value)


def t_quantile(level: float, batches: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2, max(batches - 1, 1)))


def ratio_interval(num: np.ndarray, den: np.ndarray, level: float) -> Interval:
    """Σnum/Σden over batches (per-batch sums given), with its linearised batch-means interval."""
    keep = den > 0
    num, den = num[keep], den[keep]
    b = len(den)
    if b == 0:
        return Interval(NAN, NAN, NAN)
    r = float(num.sum() / den.sum())
    if b < 2:
        return Interval(r, NAN, NAN)
    resid = num - r * den
    se = math.sqrt(b / (b - 1) * float(np.sum(resid**2))) / float(den.sum())
    h = max(t_quantile(level, b) * se, MIN_REL_HALF_WIDTH * abs(r))
    return Interval(r, r - h, r + h)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Quantile of weighted samples (ITL segments carry a token count as weight)."""
    if len(values) == 0 or float(np.sum(weights)) <= 0:
        return NAN
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(v[min(idx, len(v) - 1)])


def quantile_interval(
    values: np.ndarray, batch: np.ndarray, n_batches: int, q: float, level: float, weights: np.ndarray | None = None
) -> Interval:
    """Whole-window ``q``-quantile with a batch-means interval on the CDF scale (see module docstring)."""
    keep = ~np.isnan(values)
    v, bt = values[keep], batch[keep]
    w = np.ones(len(v)) if weights is None else np.asarray(weights, dtype=float)[keep]
    if len(v) == 0 or w.sum() <= 0:
        return Interval(NAN, NAN, NAN)
    est = weighted_quantile(v, w, q)
    below = w * (v <= est)
    num = np.bincount(bt, weights=below, minlength=n_batches)
    den = np.bincount(bt, weights=w, minlength=n_batches)
    used = den > 0
    b = int(used.sum())
    if b < 2:
        return Interval(est, NAN, NAN)
    p_hat = float(num.sum() / den.sum())
    resid = num[used] - p_hat * den[used]
    se_bm = math.sqrt(b / (b - 1) * float(np.sum(resid**2))) / float(den.sum())
    n_eff = float(w.sum() ** 2 / np.sum(w**2))
    se = max(se_bm, math.sqrt(q * (1 - q) / n_eff))
    h = t_quantile(level, b) * se
    if q + h > 1 or q - h < 0:
        # the bound lies beyond the extreme sample: the data cannot bound this quantile on that side
        # (a P99 needs ~450 samples, see tail_samples_needed), so the point must run longer
        return Interval(est, NAN, NAN)
    lo, hi = weighted_quantile(v, w, q - h), weighted_quantile(v, w, q + h)
    # never narrower than the resolution of the data: with repeated values (fixed lengths give
    # atoms) the quantile can only move to the next distinct value, and that move is not noise-free
    below, above = v[v < est], v[v > est]
    lo = min(lo, float(below.max())) if len(below) else lo
    hi = max(hi, float(above.min())) if len(above) else hi
    floor = MIN_REL_HALF_WIDTH * abs(est)
    return Interval(est, min(lo, est - floor), max(hi, est + floor))


def independent_batches(times: np.ndarray, values: np.ndarray, start_s: float, end_s: float, batches: int) -> int:
    """The largest batch count (halving from ``batches``, never below 4) whose batch means of
    ``values`` show no significant lag-1 autocorrelation.

    Batch means assume batches nearly independent. A closed loop with fixed request lengths can
    settle into slow modes (clients clumped in step with the engines' batches) that last thousands
    of requests; batches shorter than a mode are correlated and their spread understates the
    uncertainty. Longer, fewer batches restore it (the batch-size rule of Law & Carson 1979: grow
    the batch until lag-1 correlation of the batch means is insignificant, here at 2/sqrt(B)).
    """
    b = batches
    while b >= 8:
        idx = batch_index(times, start_s, end_s, b)
        cnt = np.bincount(idx, minlength=b)
        if (cnt == 0).any():
            return b
        means = np.bincount(idx, weights=values, minlength=b) / cnt
        d = means - means.mean()
        den = float(np.sum(d * d))
        if den <= 0 or float(np.sum(d[1:] * d[:-1])) / den <= 2 / math.sqrt(b):
            return b
        b //= 2
    return b


def tail_samples_needed(q: float, level: float, batches: int) -> int:
    """Samples before a ``q``-quantile's interval has a bound on its far side at i.i.d. noise:
    q + t·sqrt(q(1−q)/n) ≤ 1, i.e. n ≥ t²·q/(1−q) (436 for a P99 at 95 % with 20 batches)."""
    q = max(q, 1 - q)
    return math.ceil(t_quantile(level, batches) ** 2 * q / (1 - q))


def batch_index(times: np.ndarray, start_s: float, end_s: float, n_batches: int) -> np.ndarray:
    """Batch of each time in [start, end): equal durations; times outside are clipped to the edges."""
    span = max(end_s - start_s, 1e-12)
    return np.clip(((times - start_s) / span * n_batches).astype(np.int64), 0, n_batches - 1)


def ratio_of_intervals(a: Interval, b: Interval) -> Interval:
    """a / b with the delta-method interval of two independent figures (conservative for paired runs)."""
    if not (b.value and math.isfinite(a.value) and math.isfinite(b.value)):
        return Interval(NAN, NAN, NAN)
    r = a.value / b.value
    ra, rb = a.rel_half_width, b.rel_half_width
    if not (math.isfinite(ra) and math.isfinite(rb)):
        return Interval(r, NAN, NAN)
    h = abs(r) * math.hypot(ra, rb)
    return Interval(r, r - h, r + h)


def differ(a: Interval, b: Interval) -> bool:
    """True when two figures differ beyond their noise (their intervals do not overlap).

    Non-overlap of two 95 % intervals is a conservative test (about 0.6 % false positives for
    independent figures): a decision taken on it is not taken on noise.
    """
    if not all(math.isfinite(x) for x in (a.lo, a.hi, b.lo, b.hi)):
        return False  # noise unknown: no decision can stand on the difference
    return a.lo > b.hi or b.lo > a.hi
