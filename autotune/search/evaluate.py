"""Score one topology: sweep the concurrency grid on a backend, then PoA-hat, regimes, objectives.

This is where a trial is scored. The function is picklable (plain arguments) so the study can run
simulated trials in worker processes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from autotune import backends
from autotune.metrics import PointMetrics, summarize
from autotune.perf import get_perf_model
from autotune.poa import poa_hat
from autotune.profile import Profile
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

    def row(self) -> dict[str, Any]:
        return {**self.metrics.as_dict(), "poa_hat": self.poa_hat, "poa_window_median": self.poa_window_median,
                "poa_window_p90": self.poa_window_p90, "regime": self.regime,
                **{f"poa_{k}": v for k, v in self.poa_by_stage.items()}}


@dataclass(frozen=True)
class TrialResult:
    topology: str
    gpus: int
    points: tuple[PointScore, ...]
    knee_concurrency: int | None
    poa_objective: float  # PoA-hat at the operating point (minimize)
    tok_s_per_gpu: float  # output tok/s per GPU at the operating point (maximize)
    output_tok_s: float
    ttft_p99_ms: float  # at the operating point
    itl_p99_ms: float
    constraints: dict[str, float] = field(default_factory=dict)  # ≤ 0 is feasible (Optuna convention)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def slo_ok(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d["points"] = [p.row() for p in self.points]
        return d


def _operating_indices(profile: Profile, concurrency: list[int], labels: tuple[str, ...]) -> list[int]:
    s = profile.search
    if s.operating_point == "target" and s.target_concurrency in concurrency:
        return [concurrency.index(s.target_concurrency)]
    if s.operating_point == "saturated":
        sat = [i for i, lab in enumerate(labels) if lab == SATURATED]
        return sat or [len(concurrency) - 1]
    return list(range(len(concurrency)))


def evaluate_topology(profile: Profile, topology: Topology, backend: str = "sim", *, seed: int,
                      concurrency: list[int] | None = None, requests: int | None = None,
                      backend_options: dict[str, Any] | None = None, trial_id: str = "") -> TrialResult:
    """Deploy, sweep, score, tear down."""
    concurrency = list(concurrency or profile.workload.concurrency)
    be = backends.create(backend, **(backend_options or {}))
    perf = get_perf_model((backend_options or {}).get("perf_model", "roofline"), profile)
    timers = [perf.timer(tp) for _, tp in topology.worker_tps()]
    bs = profile.engine.block_size
    raw: list[PointScore] = []
    meta: dict[str, Any] = {}
    with be.deploy(profile, topology, trial_id=trial_id) as dep:
        for c in concurrency:
            run = dep.run_point(c, seed=seed, requests=requests)
            m = summarize(run)
            p = poa_hat(run.decisions, timers, bs, time_range=run.window_s)
            raw.append(PointScore(m, p.poa_hat, p.by_stage, p.window_median, p.window_p90))
            meta = {k: v for k, v in run.meta.items() if isinstance(v, (str, int, float, bool))}
    reg = detect_regimes(concurrency, [p.metrics.ttft_p99_ms for p in raw], [p.poa_hat for p in raw])
    points = tuple(PointScore(p.metrics, p.poa_hat, p.poa_by_stage, p.poa_window_median, p.poa_window_p90, lab)
                   for p, lab in zip(raw, reg.labels, strict=True))
    op = _operating_indices(profile, concurrency, reg.labels)
    poa_vals = [points[i].poa_hat for i in op if math.isfinite(points[i].poa_hat)]
    poa_obj = float(np.mean(poa_vals)) if poa_vals else float("nan")
    tput = max(points[i].metrics.tok_s_per_gpu for i in op)
    out = max(points[i].metrics.output_tok_s for i in op)
    ttft = max(points[i].metrics.ttft_p99_ms for i in op)
    itl = max(points[i].metrics.itl_p99_ms for i in op)
    cons: dict[str, float] = {}
    if profile.slo.ttft_p99_ms is not None:
        cons["ttft_p99"] = (ttft - profile.slo.ttft_p99_ms) / profile.slo.ttft_p99_ms if math.isfinite(ttft) else 1.0
    if profile.slo.itl_p99_ms is not None:
        cons["itl_p99"] = (itl - profile.slo.itl_p99_ms) / profile.slo.itl_p99_ms if math.isfinite(itl) else 1.0
    return TrialResult(topology.to_string(), topology.gpus, points, reg.knee_concurrency, poa_obj, tput, out, ttft,
                       itl, cons, meta)
