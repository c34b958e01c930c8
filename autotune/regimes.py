"""Saturation regimes along a closed-loop concurrency sweep and the knee between them (docs/regimes.md).

Every test is a significance test on the steady-state intervals (``<name>_lo/_hi``), so noise inside
the intervals never moves a label. Between grid points i−1 and i, with load ratio r = C_i / C_{i−1}:

* throughput stalls: throughput_i is not significantly above throughput_{i−1} (intervals overlap);
* TTFT P99 rises faster than load: the lower bound of TTFT_i / TTFT_{i−1} exceeds r;
* TTFT P99 responds to load: the lower bound of that ratio exceeds √r.

The knee is the first i where throughput stalls *and* TTFT P99 rises faster than load, and the next
point (if any) does not undo it (throughput not significantly higher, TTFT P99 not significantly
lower). Points at and after the knee are *saturated*; before it, points from the first one where TTFT
P99 responds to load or throughput stalls are *transition*; the rest are *below*. A figure without an
interval supports no test: with no intervals there is no knee and every point is *below*.

Closed loop only: autotune has no open-loop rate sweep (an open-loop profile runs one rate
schedule), so the open-loop criterion (a queue that grows without bound) is not needed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autotune.intervals import Interval, differ, ratio_of_intervals

BELOW, TRANSITION, SATURATED = "below", "transition", "saturated"


@dataclass(frozen=True)
class RegimeResult:
    knee_index: int | None  # index into the grid; None when the sweep never saturates
    knee_concurrency: int | None
    labels: tuple[str, ...]


def _known(a: Interval) -> bool:
    return all(math.isfinite(x) for x in (a.value, a.lo, a.hi))


def _significantly_above(a: Interval, b: Interval) -> bool:
    return differ(a, b) and a.value > b.value


def _ttft_ratio_lo(ttft: Sequence[Interval], i: int) -> float:
    lo = ratio_of_intervals(ttft[i], ttft[i - 1]).lo
    return lo if math.isfinite(lo) else -math.inf


def detect_regimes(
    concurrency: Sequence[int], ttft_p99_ms: Sequence[Interval], throughput: Sequence[Interval]
) -> RegimeResult:
    """Label a closed-loop sweep (grid ascending); ``throughput`` in any unit (output tok/s, req/s)."""
    n = len(concurrency)
    if not (len(ttft_p99_ms) == len(throughput) == n):
        raise ValueError("detect_regimes: one TTFT P99 and one throughput interval per grid point")

    def stalled(i: int) -> bool:
        return _known(throughput[i]) and _known(throughput[i - 1]) and not differ(throughput[i], throughput[i - 1])

    def ttft_over(i: int, power: float) -> bool:
        return _ttft_ratio_lo(ttft_p99_ms, i) > (concurrency[i] / concurrency[i - 1]) ** power

    knee = None
    for i in range(1, n):
        if not (stalled(i) and ttft_over(i, 1.0)):
            continue
        undone = i + 1 < n and (
            _significantly_above(throughput[i + 1], throughput[i])
            or _significantly_above(ttft_p99_ms[i], ttft_p99_ms[i + 1])
        )
        if not undone:
            knee = i
            break
    labels: list[str] = []
    for i in range(n):
        if knee is not None and i >= knee:
            labels.append(SATURATED)
        elif i > 0 and (labels[-1] == TRANSITION or stalled(i) or ttft_over(i, 0.5)):
            labels.append(TRANSITION)
        else:
            labels.append(BELOW)
    return RegimeResult(knee, concurrency[knee] if knee is not None else None, tuple(labels))
