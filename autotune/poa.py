"""PoA-hat: the empirical price-of-anarchy estimator of arXiv 2606.17081 (§6.4, §7.6, Remark 3).

For each routing stage, consecutive decisions are grouped into windows of ``window`` arrivals
(default: the number of candidate workers, as in the author's public replay estimator). Every
request of a window is priced on every worker from the router state *frozen at the window's
start*; a worker's k-th slot in the window carries the k requests placed there before it:

    prefill / aggregated stage:  cost(r, w, k) = T_w(u_rw) · (1 + ρ_w + k)
        T_w(u)  prefill time on w of r's uncached tokens u_rw = ISL_r − overlap_rw·bs
        ρ_w     w's resident prefill work at window start, in units of the window's mean T_w
                (so for alike requests the cost is FIFO queueing latency: "scaled by resident load")
    decode stage:                cost(r, w, k) = OSL_r · step_w(B_w + k + 1, ctx_w + (k + 1)·ctx̄)
        the predicted decode time of r on w with its frozen batch plus the k window-mates ahead.

ACT(W) prices the assignment that happened, OPT(W) is the min-cost assignment
(``scipy.optimize.linear_sum_assignment``) over the replicated slots, and

    PoA-hat_stage = Σ_W ACT(W) / Σ_W OPT(W)    (ratio of sums; per-window median and P90 too)

In disaggregated mode the two stages price different things (prefill seconds vs decode seconds), so
the headline PoA-hat is the decision-weighted mean of the per-stage ratios of sums; each stage's
value is reported as well.

Like the paper's, it is an uncalibrated regime indicator, not an efficiency ratio. OPT is
restricted to ⌈n/m⌉ slots per worker (a perfect matching for the default window of m requests),
so PoA-hat **falls below 1** when the router stacks several requests on one worker that is so much
cheaper (cache-hot, idle or faster TP) that even with the added slot load it beats spreading them —
the perfect-matching constraint binds, as on the asymmetric fleets where the paper reports 0.968
(C=64, m=5). It is **exactly 1** when every request went where the matching would put it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from autotune.intervals import Interval, batch_index, ratio_interval
from autotune.perf import StepTimer, prefill_attn_work
from autotune.records import DecisionLog


@dataclass(frozen=True)
class PoaResult:
    poa_hat: float  # Σ ACT / Σ OPT over all windows and stages
    act_s: float
    opt_s: float
    windows: int
    window_median: float
    window_p90: float
    by_stage: dict[str, float]
    lo: float = float("nan")  # confidence interval of poa_hat (batch means; NaN: not computed)
    hi: float = float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "poa_hat": self.poa_hat,
            "act_s": self.act_s,
            "opt_s": self.opt_s,
            "windows": self.windows,
            "window_median": self.window_median,
            "window_p90": self.window_p90,
            "by_stage": self.by_stage,
            "lo": self.lo,
            "hi": self.hi,
        }


NAN_RESULT = PoaResult(float("nan"), 0.0, 0.0, 0, float("nan"), float("nan"), {})


def window_costs(cost: np.ndarray, chosen: Sequence[int]) -> tuple[float, float]:
    """ACT and OPT of one window from ``cost[r, w, k]`` (k = slot index on worker w).

    ACT prices each request in the slot it really took (k = window-mates routed there before it).
    OPT may use only ⌈n/m⌉ slots per worker: with a window of m requests it is a perfect matching,
    which is what lets PoA-hat fall below 1 when the router stacked requests on a fast worker.
    """
    n, m, slots = cost.shape
    if n == 1:
        return float(cost[0, chosen[0], 0]), float(cost[0, :, 0].min())
    seen = [0] * m
    act = 0.0
    for r, w in enumerate(chosen):
        act += float(cost[r, w, min(seen[w], slots - 1)])
        seen[w] += 1
    k = min(slots, -(-n // m))  # a worker is replicated only as far as the window needs
    flat = cost[:, :, :k].reshape(n, m * k)
    rows, cols = linear_sum_assignment(flat)
    return act, float(flat[rows, cols].sum())


class _PrefillPricer:
    def __init__(self, timers: Sequence[StepTimer]) -> None:
        self.timers = timers
        self._memo: dict[tuple[int, int, int], float] = {}

    def t(self, w: int, new: int, cached: int) -> float:
        key = (w, new, cached)
        v = self._memo.get(key)
        if v is None:
            v = self._memo[key] = (
                self.timers[w].step_s(new, prefill_attn_work(new, cached), 0, 0, 0.0) if new > 0 else 0.0
            )
        return v


def stage_windows(
    log: DecisionLog,
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
) -> list[tuple[float, float, float]]:
    """(time of the window's first decision, ACT, OPT) per window of one stage's decisions."""
    idx = [
        i
        for i, c in enumerate(log.chosen)
        if c >= 0 and (time_range is None or time_range[0] <= log.time_s[i] <= time_range[1])
    ]
    workers = log.workers
    m = len(workers)
    if m == 0 or not idx:
        return []
    size = max(window or m, 1)
    bs = block_size
    prefill = _PrefillPricer([timers[w] for w in workers])
    out = []
    for start in range(0, len(idx), size):
        rows = idx[start : start + size]
        n = len(rows)
        first = rows[0]
        cost = np.empty((n, m, n))
        ks = np.arange(n)
        if log.stage == "decode":
            ab = log.active_blocks[first]
            ar = log.active_requests[first]
            osl = np.array([log.output_tokens[i] for i in rows], dtype=float)
            ctx_mean = sum(log.input_tokens[i] for i in rows) / n
            for j, w in enumerate(workers):
                step = timers[w].step_s
                base_ctx = ab[j] * bs
                steps = np.array(
                    [step(0, 0.0, ar[j] + k + 1, int(base_ctx + (k + 1) * ctx_mean), 0.0) for k in range(n)]
                )
                cost[:, j, :] = osl[:, None] * steps[None, :]
        else:
            apt = log.active_prefill_tokens[first]
            own = np.empty((n, m))
            pt = prefill.t
            for r, i in enumerate(rows):
                isl, ov = log.input_tokens[i], log.overlap_blocks[i]
                own[r] = [pt(j, isl - min(ov[j] * bs, isl - 1), min(ov[j] * bs, isl - 1)) for j in range(m)]
            mean_own = own.mean(axis=0)
            resident = np.array([pt(j, apt[j], 0) if apt[j] > 0 else 0.0 for j in range(m)])
            rho = np.divide(resident, mean_own, out=np.zeros(m), where=mean_own > 0)
            cost = own[:, :, None] * (1.0 + rho[None, :, None] + ks[None, None, :])
        out.append((log.time_s[first], *window_costs(cost, [log.chosen[i] for i in rows])))
    return out


def poa_hat(
    logs: dict[str, DecisionLog],
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
    batches: int = 0,
    level: float = 0.95,
) -> PoaResult:
    """PoA-hat of a load point over all routing stages (ratio of sums).

    With ``batches`` > 1 (and a ``time_range``), the interval comes from batch means: each stage's
    ratio of sums is linearised over equal-duration batches of windows, and the stages are
    combined with the same decision weights as the figure itself.
    """
    pairs: list[tuple[float, float]] = []
    by_stage: dict[str, float] = {}
    weighted, decisions = 0.0, 0
    var = 0.0
    stage_weights: list[tuple[int, Interval]] = []
    for stage, log in logs.items():
        ws = stage_windows(log, timers, block_size, window, time_range)
        a, o = sum(p[1] for p in ws), sum(p[2] for p in ws)
        if o > 0:
            by_stage[stage] = a / o
            n = sum(1 for c in log.chosen if c >= 0)
            weighted += n * by_stage[stage]
            decisions += n
            pairs.extend((p[1], p[2]) for p in ws)
            if batches > 1 and time_range is not None:
                bt = batch_index(np.array([p[0] for p in ws]), time_range[0], time_range[1], batches)
                act = np.bincount(bt, weights=[p[1] for p in ws], minlength=batches)
                opt = np.bincount(bt, weights=[p[2] for p in ws], minlength=batches)
                stage_weights.append((n, ratio_interval(act, opt, level)))
    if not pairs or decisions == 0:
        return NAN_RESULT
    value = weighted / decisions
    lo = hi = float("nan")
    if stage_weights and all(np.isfinite(iv.lo) for _, iv in stage_weights):
        var = sum((n / decisions * iv.half_width) ** 2 for n, iv in stage_weights)
        lo, hi = value - var**0.5, value + var**0.5
    ratios = np.array([a / o for a, o in pairs if o > 0])
    return PoaResult(
        poa_hat=value,
        act_s=sum(p[0] for p in pairs),
        opt_s=sum(p[1] for p in pairs),
        windows=len(pairs),
        window_median=float(np.median(ratios)) if len(ratios) else float("nan"),
        window_p90=float(np.percentile(ratios, 90)) if len(ratios) else float("nan"),
        by_stage=by_stage,
        lo=lo,
        hi=hi,
    )
