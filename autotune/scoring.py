"""What a load point and a concurrency sweep are worth: the one place a trial is scored.

A point is worth its steady-state metrics (``metrics.summarize``), its PoA-hat and its routing
regret (``poa``, docs/poa-hat.md); a sweep is worth its regimes, its objectives at the operating
point and its SLO margins. The search, the (τ, ω) heatmaps and the spike experiment all score
through here, so they cannot disagree on what a number means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from autotune.intervals import Interval
from autotune.metrics import PointMetrics, summarize
from autotune.perf import PerfModel, StepTimer
from autotune.poa import poa_hat, routing_regret
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.regimes import SATURATED, detect_regimes
from autotune.topology import Topology


@dataclass(frozen=True)
class PointScore:
    metrics: PointMetrics
    poa_hat: float
    poa_by_stage: dict[str, float]
    poa_window_median: float
    poa_window_p90: float
    regime: str = ""
    poa_hat_lo: float = float("nan")  # confidence interval of poa_hat
    poa_hat_hi: float = float("nan")
    # the routing-only regret (same frozen matrix on both sides, ≈ 1), its interval and stages
    routing_regret: float = float("nan")
    routing_regret_lo: float = float("nan")
    routing_regret_hi: float = float("nan")
    regret_by_stage: dict[str, float] = field(default_factory=dict)

    @property
    def poa_interval(self) -> Interval:
        return Interval(self.poa_hat, self.poa_hat_lo, self.poa_hat_hi)

    @property
    def regret_interval(self) -> Interval:
        return Interval(self.routing_regret, self.routing_regret_lo, self.routing_regret_hi)

    def row(self) -> dict[str, Any]:
        return {
            **self.metrics.as_dict(),
            "poa_hat": self.poa_hat,
            "poa_hat_lo": self.poa_hat_lo,
            "poa_hat_hi": self.poa_hat_hi,
            "poa_window_median": self.poa_window_median,
            "poa_window_p90": self.poa_window_p90,
            "routing_regret": self.routing_regret,
            "routing_regret_lo": self.routing_regret_lo,
            "routing_regret_hi": self.routing_regret_hi,
            "regime": self.regime,
            **{f"poa_{k}": v for k, v in self.poa_by_stage.items()},
            **{f"regret_{k}": v for k, v in self.regret_by_stage.items()},
        }


@dataclass(frozen=True)
class TrialResult:
    topology: str
    gpus: int
    points: tuple[PointScore, ...]
    knee_concurrency: int | None
    poa_objective: float  # PoA-hat at the operating point (minimize; docs/poa-hat.md)
    tok_s_per_gpu: float  # output tok/s per GPU at the operating point (maximize)
    output_tok_s: float
    ttft_p99_ms: float  # at the operating point
    itl_p99_ms: float
    constraints: dict[str, float] = field(default_factory=dict)  # ≤ 0 is feasible (Optuna convention)
    meta: dict[str, Any] = field(default_factory=dict)
    poa_objective_lo: float = float("nan")  # confidence intervals of the two objectives
    poa_objective_hi: float = float("nan")
    tok_s_per_gpu_lo: float = float("nan")
    tok_s_per_gpu_hi: float = float("nan")
    # the load the objectives are read at (capacity: the highest that meets the SLO)
    operating_concurrency: int | None = None
    # routing regret at the operating point (reported beside PoA-hat, not an objective)
    routing_regret: float = float("nan")
    routing_regret_lo: float = float("nan")
    routing_regret_hi: float = float("nan")

    @property
    def poa_interval(self) -> Interval:
        return Interval(self.poa_objective, self.poa_objective_lo, self.poa_objective_hi)

    @property
    def tok_s_per_gpu_interval(self) -> Interval:
        return Interval(self.tok_s_per_gpu, self.tok_s_per_gpu_lo, self.tok_s_per_gpu_hi)

    @property
    def slo_ok(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["points"] = [p.row() for p in self.points]
        return d


def step_timers(perf: PerfModel, topology: Topology) -> list[StepTimer]:
    """One step-time model per worker, in ``Topology.worker_tps()`` order (what PoA-hat prices with)."""
    return [perf.timer(tp) for _, tp in topology.worker_tps()]


def score_point(run: PointRun, timers: Sequence[StepTimer], block_size: int) -> PointScore:
    """Metrics, PoA-hat and routing regret of one load point, over its measured window.

    A live point ran on mockers compressed by ``meta["speedup_ratio"]``: PoA-hat prices its frozen
    costs at the same speed-up as the measured latencies it divides (the regret is a ratio of two
    prices on one matrix and needs no scale).
    """
    m = run.summary if isinstance(run.summary, PointMetrics) else summarize(run)
    window = (m.steady_start_s, m.steady_end_s)
    kw: dict[str, Any] = {"time_range": window, "batches": m.batches, "level": m.ci_level}
    speedup = float(run.meta.get("speedup_ratio", 1.0) or 1.0)
    p = poa_hat(run.decisions, run.requests, timers, block_size, speedup=speedup, **kw)
    r = routing_regret(run.decisions, timers, block_size, **kw)
    return PointScore(
        m, p.value, p.by_stage, p.window_median, p.window_p90, "", p.lo, p.hi, r.value, r.lo, r.hi, r.by_stage
    )


def _mean_interval(ivs: Sequence[Interval]) -> Interval:
    """Mean of the finite figures of independent points: half-widths add in quadrature, over the count."""
    ok = [iv for iv in ivs if math.isfinite(iv.value)]
    if not ok:
        return Interval(math.nan, math.nan, math.nan)
    v = float(np.mean([iv.value for iv in ok]))
    h = math.sqrt(sum(iv.half_width**2 for iv in ok)) / len(ok)
    return Interval(v, v - h, v + h)


def meets_slo(profile: Profile, m: PointMetrics) -> bool:
    """Steady-state TTFT P99 and ITL P99 within the profile's SLOs (point estimates; the intervals are reported)."""
    slo = profile.slo
    ok = m.requests > 0
    if slo.ttft_p99_ms is not None:
        ok = ok and math.isfinite(m.ttft_p99_ms) and m.ttft_p99_ms <= slo.ttft_p99_ms
    if slo.itl_p99_ms is not None:
        ok = ok and math.isfinite(m.itl_p99_ms) and m.itl_p99_ms <= slo.itl_p99_ms
    return ok


def capacity_index(profile: Profile, points: Sequence[PointScore]) -> int | None:
    """The highest load of the sweep that meets the SLO (None: not even the lightest does)."""
    ok = [i for i, p in enumerate(points) if meets_slo(profile, p.metrics)]
    return max(ok, key=lambda i: points[i].metrics.concurrency) if ok else None


def _operating_indices(
    profile: Profile, concurrency: list[int], labels: tuple[str, ...], points: Sequence[PointScore]
) -> list[int]:
    s = profile.search
    if s.operating_point == "capacity":
        cap = capacity_index(profile, points)
        return [cap if cap is not None else 0]
    if s.operating_point == "target" and s.target_concurrency in concurrency:
        return [concurrency.index(s.target_concurrency)]
    if s.operating_point == "saturated":
        sat = [i for i, lab in enumerate(labels) if lab == SATURATED]
        return sat or [len(concurrency) - 1]
    return list(range(len(concurrency)))


def score_sweep(
    profile: Profile,
    topology: Topology,
    concurrency: list[int],
    points: Sequence[PointScore],
    meta: dict[str, Any] | None = None,
) -> TrialResult:
    """Regimes along the sweep, then the objectives and SLO margins at the profile's operating point."""
    reg = detect_regimes(
        concurrency,
        [p.metrics.interval("ttft_p99_ms") for p in points],
        [p.metrics.interval("output_tok_s") for p in points],
    )
    labelled = tuple(replace(p, regime=lab) for p, lab in zip(points, reg.labels, strict=True))
    op = _operating_indices(profile, concurrency, reg.labels, labelled)
    poa = _mean_interval([labelled[i].poa_interval for i in op])
    regret = _mean_interval([labelled[i].regret_interval for i in op])
    best = max(op, key=lambda i: labelled[i].metrics.tok_s_per_gpu)
    tput_iv = labelled[best].metrics.interval("tok_s_per_gpu")
    tput = max(labelled[i].metrics.tok_s_per_gpu for i in op)
    out = max(labelled[i].metrics.output_tok_s for i in op)
    ttft = max(labelled[i].metrics.ttft_p99_ms for i in op)
    itl = max(labelled[i].metrics.itl_p99_ms for i in op)
    cons: dict[str, float] = {}
    if profile.slo.ttft_p99_ms is not None:
        cons["ttft_p99"] = (ttft - profile.slo.ttft_p99_ms) / profile.slo.ttft_p99_ms if math.isfinite(ttft) else 1.0
    if profile.slo.itl_p99_ms is not None:
        cons["itl_p99"] = (itl - profile.slo.itl_p99_ms) / profile.slo.itl_p99_ms if math.isfinite(itl) else 1.0
    return TrialResult(
        topology.to_string(),
        topology.gpus,
        labelled,
        reg.knee_concurrency,
        poa.value,
        tput,
        out,
        ttft,
        itl,
        cons,
        dict(meta or {}),
        poa.lo,
        poa.hi,
        tput_iv.lo,
        tput_iv.hi,
        labelled[best].metrics.concurrency if len(op) == 1 else None,
        regret.value,
        regret.lo,
        regret.hi,
    )
