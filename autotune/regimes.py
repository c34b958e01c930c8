"""Saturation regimes along a concurrency sweep and the knee between them.

Rule (documented in docs/poa-hat.md): let e_i be the elasticity of TTFT P99 between grid points
i−1 and i, e_i = Δlog TTFT_P99 / Δlog C. Latency that grows faster than load (e > 1) means queues
are building. The knee is the first point where

* e_i > 1 + tol (superlinear TTFT growth, tol = 0.5 by default), and
* the growth persists: it is the last point, or TTFT keeps rising at the next point, and
* PoA-hat grows with it: PoA-hat_i ≥ PoA-hat_{i−1} · (1 − poa_slack) (routing got no better).

Points at and after the knee are *saturated*; points before it whose TTFT already grows at least
like √C (e ≥ 0.5) are *transition*; the rest are *below*. One noisy point cannot create a knee
because of the persistence test, and a flat PoA-hat cannot veto a knee by noise below ``poa_slack``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

BELOW, TRANSITION, SATURATED = "below", "transition", "saturated"


@dataclass(frozen=True)
class RegimeResult:
    knee_index: int | None  # index into the grid; None when the sweep never saturates
    knee_concurrency: int | None
    labels: tuple[str, ...]
    elasticity: tuple[float, ...]


def _elasticity(c: Sequence[float], y: Sequence[float]) -> list[float]:
    out = [0.0]
    for i in range(1, len(c)):
        if y[i - 1] > 0 and y[i] > 0 and c[i] > c[i - 1] and all(map(math.isfinite, (y[i], y[i - 1]))):
            out.append(math.log(y[i] / y[i - 1]) / math.log(c[i] / c[i - 1]))
        else:
            out.append(0.0)
    return out


def detect_regimes(
    concurrency: Sequence[int],
    ttft_p99_ms: Sequence[float],
    poa_hat: Sequence[float],
    tol: float = 0.5,
    poa_slack: float = 0.05,
    ttft_intervals: Sequence[tuple[float, float]] | None = None,
) -> RegimeResult:
    """Label the sweep; with ``ttft_intervals`` ((lo, hi) per point) a knee also needs the TTFT P99 rise
    into it to be larger than the noise (the intervals of the two points do not overlap)."""
    n = len(concurrency)
    e = _elasticity(concurrency, ttft_p99_ms)
    knee = None
    for i in range(1, n):
        if e[i] <= 1 + tol:
            continue
        if ttft_intervals is not None and not ttft_intervals[i][0] > ttft_intervals[i - 1][1]:
            continue  # the rise is inside the noise (or has no interval): no knee on it
        persists = i == n - 1 or ttft_p99_ms[i + 1] > ttft_p99_ms[i]
        p0, p1 = poa_hat[i - 1], poa_hat[i]
        poa_ok = not (math.isfinite(p0) and math.isfinite(p1)) or p1 >= p0 * (1 - poa_slack)
        if persists and poa_ok:
            knee = i
            break
    labels = []
    for i in range(n):
        if knee is not None and i >= knee:
            labels.append(SATURATED)
        elif e[i] >= 0.5:
            labels.append(TRANSITION)
        else:
            labels.append(BELOW)
    return RegimeResult(knee, concurrency[knee] if knee is not None else None, tuple(labels), tuple(e))
