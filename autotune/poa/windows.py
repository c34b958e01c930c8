"""The machinery both PoA estimators share: decision windows, the Hungarian optimum, aggregation.

A routing stage's decisions are grouped into windows of ``window`` consecutive decisions (default:
the stage's number of candidate workers ``m``, as in the author's public replay estimator). A
window's requests are priced on a cost array ``cost[r, w, k]`` (k: the slot on worker w, i.e. how
many window-mates sit there before r); OPT is the min-cost assignment over ⌈n/m⌉ slots per worker
(``scipy.optimize.linear_sum_assignment``). Per stage the figure is a ratio of sums over windows,
with per-window median and P90, and a batch-means interval over the steady-state window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from autotune.intervals import Interval, batch_index, ratio_interval
from autotune.perf import StepTimer, prefill_attn_work
from autotune.records import DecisionLog

# (time of the window's first decision, its realised cost, its optimal cost) in seconds
Window = tuple[float, float, float]


@dataclass(frozen=True)
class PoaResult:
    value: float  # Σ ACT / Σ OPT of the headline stage(s) (see each estimator)
    act_s: float
    opt_s: float
    windows: int
    window_median: float
    window_p90: float
    by_stage: dict[str, float]
    lo: float = float("nan")  # confidence interval of ``value`` (batch means; NaN: not computed)
    hi: float = float("nan")


def window_costs(
    cost: np.ndarray, chosen: Sequence[int], memo: dict[bytes, float] | None = None
) -> tuple[float, float]:
    """ACT and OPT of one window from ``cost[r, w, k]`` (k = slot index on worker w).

    ACT prices each request in the slot it really took (k = window-mates routed there before it).
    OPT may use only ⌈n/m⌉ slots per worker: with a window of m requests it is a perfect matching,
    which is what lets the routing regret fall below 1 when the router stacked requests on a fast worker.
    """
    n, m, slots = cost.shape
    if n == 1:
        return float(cost[0, chosen[0], 0]), float(cost[0, :, 0].min())
    seen = [0] * m
    act = 0.0
    for r, w in enumerate(chosen):
        act += float(cost[r, w, min(seen[w], slots - 1)])
        seen[w] += 1
    return act, optimal_cost(cost, memo)


def optimal_cost(cost: np.ndarray, memo: dict[bytes, float] | None = None) -> float:
    """Min-cost assignment of the window's requests to worker slots (⌈n/m⌉ slots per worker).

    ``memo``: answers by the matrix's bytes, for one stage's windows (a steady workload repeats a few
    frozen matrices, and the assignment is the estimators' costliest step).
    """
    n, m, slots = cost.shape
    k = min(slots, -(-n // m))  # a worker is replicated only as far as the window needs
    flat = cost[:, :, :k].reshape(n, m * k)
    key = flat.tobytes() + repr(flat.shape).encode() if memo is not None else b""
    if memo is not None and key in memo:
        return memo[key]
    rows, cols = linear_sum_assignment(flat)
    got = float(flat[rows, cols].sum())
    if memo is not None:
        memo[key] = got
    return got


def decision_windows(
    log: DecisionLog,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
    keep: Callable[[int], bool] | None = None,
) -> Iterator[list[int]]:
    """Decision indices of a stage, routed (chosen ≥ 0), inside ``time_range`` and kept, in windows."""
    idx = [
        i
        for i, c in enumerate(log.chosen)
        if c >= 0
        and (time_range is None or time_range[0] <= log.time_s[i] <= time_range[1])
        and (keep is None or keep(i))
    ]
    size = max(window or len(log.workers), 1)
    if not log.workers:
        return
    for start in range(0, len(idx), size):
        yield idx[start : start + size]


class PrefillPricer:
    """Prefill time of ``new`` uncached tokens after ``cached`` ones on a stage's j-th candidate, memoised."""

    def __init__(self, timers: Sequence[StepTimer]) -> None:
        self.timers = timers
        self._memo: dict[tuple[int, int, int], float] = {}
        self._rows: dict[tuple[int, tuple[int, ...]], list[float]] = {}  # (ISL, overlaps) -> a row of ``own``

    def t(self, w: int, new: int, cached: int) -> float:
        key = (w, new, cached)
        v = self._memo.get(key)
        if v is None:
            v = self._memo[key] = (
                self.timers[w].step_s(new, prefill_attn_work(new, cached), 0, 0, 0.0) if new > 0 else 0.0
            )
        return v

    def own(self, log: DecisionLog, rows: Sequence[int], block_size: int) -> np.ndarray:
        """``[r, j]``: prefill time of request r's uncached tokens on candidate j at its decision-time overlap."""
        out = np.empty((len(rows), len(log.workers)))
        memo = self._rows
        for r, i in enumerate(rows):
            isl, ov = log.input_tokens[i], log.overlap_blocks[i]
            row = memo.get((isl, ov))
            if row is None:  # requests repeat a few (ISL, overlap) pairs: price each pair once
                cached = [min(o * block_size, isl - 1) for o in ov]
                row = memo[(isl, ov)] = [self.t(j, isl - c, c) for j, c in enumerate(cached)]
            out[r] = row
        return out


def combine(
    stages: dict[str, list[Window]],
    weights: dict[str, float],
    time_range: tuple[float, float] | None = None,
    batches: int = 0,
    level: float = 0.95,
) -> PoaResult:
    """Per-stage ratios of sums, and their ``weights``-weighted mean as the headline value.

    Stages with weight 0 are reported in ``by_stage`` only. With ``batches`` > 1 (and a
    ``time_range``) the interval comes from batch means: each stage's ratio of sums is linearised over
    equal-duration batches of windows (by the time of a window's first decision), and the stages'
    half-widths combine in quadrature with the headline's weights.
    """
    by_stage: dict[str, float] = {}
    pairs: list[tuple[float, float]] = []
    weighted = total_w = 0.0
    intervals: list[tuple[float, Interval]] = []
    for stage, ws in stages.items():
        a, o = sum(p[1] for p in ws), sum(p[2] for p in ws)
        if o <= 0:
            continue
        by_stage[stage] = a / o
        w = weights.get(stage, 0.0)
        if w <= 0:
            continue
        weighted += w * by_stage[stage]
        total_w += w
        pairs.extend((p[1], p[2]) for p in ws)
        if batches > 1 and time_range is not None:
            bt = batch_index(np.array([p[0] for p in ws]), time_range[0], time_range[1], batches)
            act = np.bincount(bt, weights=[p[1] for p in ws], minlength=batches)
            opt = np.bincount(bt, weights=[p[2] for p in ws], minlength=batches)
            intervals.append((w, ratio_interval(act, opt, level)))
    if not pairs or total_w == 0:
        return PoaResult(float("nan"), 0.0, 0.0, 0, float("nan"), float("nan"), by_stage)
    value = weighted / total_w
    lo = hi = float("nan")
    if intervals and all(np.isfinite(iv.lo) for _, iv in intervals):
        half = sum((w / total_w * iv.half_width) ** 2 for w, iv in intervals) ** 0.5
        lo, hi = value - half, value + half
    ratios = np.array([a / o for a, o in pairs if o > 0])
    return PoaResult(
        value=value,
        act_s=sum(p[0] for p in pairs),
        opt_s=sum(p[1] for p in pairs),
        windows=len(pairs),
        window_median=float(np.median(ratios)) if len(ratios) else float("nan"),
        window_p90=float(np.percentile(ratios, 90)) if len(ratios) else float("nan"),
        by_stage=by_stage,
        lo=lo,
        hi=hi,
    )
