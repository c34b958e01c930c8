"""Hold the simulator against a real Dynamo: same workload, same worker timing, both measured.

``validate`` deploys the topology on ``dynamo-local`` (real frontend, KV router, mocker workers)
and runs one load point; then it runs the same point on ``SimBackend`` configured with exactly
the timing the mockers used (their NPZ tables via perf model ``mocker-npz``, or the mocker's
default polynomial with the same speed-up). Both runs are scored by ``metrics.summarize``, so
any difference comes from the simulator's router, batching or queueing semantics.

Targets (issue 4): within 10 % on P50s and means, 15 % on P99s, 5 points on the hit rate.
Per-worker request shares are reported with a 10-point guide (not an issue target).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from autotune.backends.dynamo_local import DynamoLocalBackend
from autotune.backends.sim import SimBackend
from autotune.calibrate.points import save_point
from autotune.host_costs import HOST_COSTS
from autotune.metrics import PointMetrics, summarize, weighted_quantile
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.sim.delivery import with_delivery_noise
from autotune.topology import Topology

# metric, label, kind ("rel" = relative error, "abs_pts" = absolute difference in points), tolerance
CHECKS: tuple[tuple[str, str, str, float], ...] = (
    ("ttft_p50_ms", "TTFT P50 (ms)", "rel", 0.10),
    ("ttft_p99_ms", "TTFT P99 (ms)", "rel", 0.15),
    ("itl_mean_ms", "ITL mean (ms)", "rel", 0.10),
    ("itl_p99_ms", "ITL P99 (ms)", "rel", 0.15),
    ("output_tok_s", "throughput (tok/s)", "rel", 0.10),
    ("req_s", "throughput (req/s)", "rel", 0.10),
    ("prefix_hit_rate", "prefix-hit rate (%)", "abs_pts", 5.0),
)
SHARE_TOLERANCE_PTS = 10.0


@dataclass
class Row:
    metric: str
    label: str
    sim: float
    live: float
    error: float  # relative error (sim − live)/live, or difference in points
    kind: str
    tolerance: float

    @property
    def ok(self) -> bool:
        return not math.isnan(self.error) and abs(self.error) <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class ValidationReport:
    profile: str
    topology: str
    concurrency: int
    requests: int
    timing: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    sim: PointMetrics | None = None
    live: PointMetrics | None = None
    live_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows if r.kind != "share_pts")

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "topology": self.topology,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "timing": self.timing,
            "ok": self.ok,
            "rows": [r.as_dict() for r in self.rows],
            "sim": self.sim.as_dict() if self.sim else None,
            "live": self.live.as_dict() if self.live else None,
            "replay": self.live_meta.get("replay", {}),
        }

    def to_text(self) -> str:
        """Plain-text side-by-side table (the CLI renders the same rows with rich)."""
        lines = [
            f"{self.profile} {self.topology} C={self.concurrency} n={self.requests} "
            f"timing={self.timing.get('timing')} speedup={self.timing.get('speedup_ratio')} "
            f"frontend jitter={self.timing.get('frontend_jitter_ms')} ms "
            f"token jitter={self.timing.get('token_jitter_ms')} ms",
            f"{'metric':<26}{'sim':>10}{'live':>10}{'error':>10}{'target':>9}  ok",
        ]
        for r in self.rows:
            err = f"{r.error:+.1%}" if r.kind == "rel" else f"{r.error:+.1f}pt"
            tol = f"{r.tolerance:.0%}" if r.kind == "rel" else f"{r.tolerance:g}pt"
            lines.append(f"{r.label:<26}{_f(r.sim):>10}{_f(r.live):>10}{err:>10}{tol:>9}  {'yes' if r.ok else 'NO'}")
        return "\n".join(lines)


def _f(v: float) -> str:
    return "-" if v != v else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"


def worker_shares(run: PointRun) -> dict[str, float]:
    """Percent of measured, completed requests each worker served (prefill and decode sides)."""
    df = run.requests
    ok = df[df["measured"].astype(bool) & (df["status"] == "ok")]
    out: dict[str, float] = {}
    if len(ok) == 0:
        return out
    cols = (
        ("prefill_worker", "decode_worker")
        if (ok["prefill_worker"] != ok["decode_worker"]).any()
        else ("decode_worker",)
    )
    for col in cols:
        counts = ok[col].value_counts(normalize=True)
        for w, share in counts.items():  # the ignore: w is a worker id; pandas-stubs types labels as Hashable
            out[f"{col.split('_')[0]} w{int(w)}"] = float(share) * 100  # type: ignore[call-overload]
    return out


def compare(sim: PointMetrics, live: PointMetrics, sim_run: PointRun, live_run: PointRun) -> list[Row]:
    rows = []
    for metric, label, kind, tol in CHECKS:
        s, v = float(getattr(sim, metric)), float(getattr(live, metric))
        if kind == "abs_pts":
            s, v = s * 100, v * 100
            err = s - v
        else:
            err = (s - v) / v if v and not math.isnan(v) else float("nan")
        rows.append(Row(metric, label, s, v, err, kind, tol))
    ss, ls = worker_shares(sim_run), worker_shares(live_run)
    for key in sorted(set(ss) | set(ls), key=lambda k: (k.split()[0] != "prefill", int(k.split("w")[-1]))):
        s, v = ss.get(key, 0.0), ls.get(key, 0.0)
        rows.append(Row(f"share {key}", f"share {key} (%)", s, v, s - v, "share_pts", SHARE_TOLERANCE_PTS))
    return rows


# Both sides run time-dilated (mocker speed-up 0.5: every engine step takes twice as long) so the
# host's own CPU cost — client, frontend and mockers sharing a small machine — stays small next to
# the engine time being compared. Measured on 2 cores, 2A4 at C=8: throughput within 13 % at
# speed-up 1 under load and within 1 % at 0.5; ITL mean within 1 % at both. (Closed-loop TTFT at
# C=8 is bimodal — a request either shares its first step with another prefill or not — so its
# median flips between runs; compare it over several seeds.)
VALIDATE_SPEEDUP = 0.5


# An exponential's median minus its 5th percentile is ln 2 − ln(20/19) ≈ 0.642 of its mean.
_EXP_P50_MINUS_P5 = math.log(2) - math.log(20 / 19)
MIN_ROUTE_SAMPLES = 20


def fit_frontend_jitter_ms(live: PointRun) -> float | None:
    """The exponential part of the live frontend's delay before routing (send → router decision).

    Fitted from the spread (P50 − P5), which the slow tail of a 2-core host does not distort;
    None when too few requests carry a router timestamp.
    """
    df = live.requests
    delay_ms = ((df["routed_s"] - df["arrival_s"]) * 1000).dropna().to_numpy()
    delay_ms = delay_ms[delay_ms >= 0]
    if len(delay_ms) < MIN_ROUTE_SAMPLES:
        return None
    p5, p50 = np.percentile(delay_ms, [5, 50])
    return float(max(0.0, (p50 - p5) / _EXP_P50_MINUS_P5))


def _p50_minus_p10_ms(run: PointRun) -> float:
    v, w = np.asarray(run.itl_ms, dtype=float), np.asarray(run.itl_weight, dtype=float)
    return weighted_quantile(v, w, 0.5) - weighted_quantile(v, w, 0.1)


def fit_token_jitter_ms(live: PointRun, sim: PointRun) -> float:
    """Mean per-token delivery delay that widens the simulator's ITL to the live one's spread.

    Measured on the lower half (P10 to P50), where steps are plain decode steps and the spread beyond
    the simulator's own is delivery noise; a Laplace's P50 − P10 is ln 5 times its scale.
    """
    excess = _p50_minus_p10_ms(live) - _p50_minus_p10_ms(sim)
    return float(excess / math.log(5)) if excess > 0 else 0.0


def _host_costs(section: BaseModel, name: str) -> dict[str, float]:
    """The local host's measured costs for the knobs of ``section`` that the profile did not set."""
    return {k: v for k, v in HOST_COSTS[name].items() if k not in section.model_fields_set}


def _no_costs(section: BaseModel, name: str) -> dict[str, float]:
    return {}


def mocker_equivalent(profile: Profile, live: PointRun | None = None, *, host_costs: bool = False) -> Profile:
    """The profile as the local mocker stack realises it: one host, so every KV transfer runs at the
    bandwidth handed to the mockers (``--kv-transfer-bandwidth``), with no NIXL setup or hand-over;
    with ``host_costs``, the host's per-request costs (``autotune.host_costs``) in every queue knob the
    profile leaves unset. Off by default: fitted at saturation on a loaded host, they overstate the
    queue at light load (on a clean CI run, 1P4-2D4 at C=8: simulated TTFT P99 220 ms vs 86 ms live), so
    ``validate`` compares the no-queue twin until they are re-fitted on a quiet machine;
    and, given the live run, the frontend noise that run showed (``fit_frontend_jitter_ms``). Token
    delivery noise starts at 0: ``validate`` fits it against this profile's own ITL spread."""
    host = _host_costs if host_costs else _no_costs
    kv = profile.kv_transfer.model_copy(
        update={"setup_ms": 0.0, "handover_ms": 0.0, **host(profile.kv_transfer, "kv_transfer")}
    )
    cluster = profile.cluster.model_copy(update={"inter_node_bw_gb_s": profile.cluster.intra_bw_gb_s})
    engine = profile.engine.model_copy(update=host(profile.engine, "engine"))
    update: dict[str, Any] = {"kv_transfer": kv, "cluster": cluster, "engine": engine}
    jitter_ms = fit_frontend_jitter_ms(live) if live is not None else None
    # token jitter: fitted after the run (fit_token_jitter_ms)
    dyn_update: dict[str, float] = {"token_jitter_ms": 0.0, **host(profile.dynamo, "dynamo")}
    if jitter_ms is not None:
        dyn_update["frontend_jitter_ms"] = min(jitter_ms, profile.dynamo.frontend_overhead_ms)
    update["dynamo"] = profile.dynamo.model_copy(update=dyn_update)
    return profile.model_copy(update=update)


def validate(
    profile: Profile,
    topology: Topology,
    *,
    concurrency: int | None = None,
    requests: int | None = None,
    seed: int | None = None,
    timing: str = "roofline",
    speedup: float = VALIDATE_SPEEDUP,
    live_backend: DynamoLocalBackend | None = None,
    records_dir: Path | None = None,
) -> ValidationReport:
    """Run one point live and simulated; return both summaries and their errors. With ``records_dir``,
    the live point's per-request records are kept there for ``autotune calibrate``."""
    c = concurrency or (profile.search.target_concurrency or profile.workload.concurrency[0])
    n = requests or profile.workload.requests_per_point
    seed = profile.seed if seed is None else seed
    live_backend = live_backend or DynamoLocalBackend(timing=timing, speedup=speedup)
    with live_backend.deploy(profile, topology, trial_id="validate") as dep:
        live_run = dep.run_point(c, seed=seed, requests=n)
        if records_dir is not None:
            save_point(live_run, topology, profile, Path(records_dir) / f"{topology.shape()}-c{c}-seed{seed}")
        name, opts = dep.plan.sim_backend_options()
        # The sim runs while the deployment (and its timing tables) still exists.
        sim_profile = mocker_equivalent(profile, live_run)
        sim_run = (
            SimBackend(name, **opts)
            .deploy(sim_profile, topology, trial_id="validate-sim")
            .run_point(c, seed=seed, requests=n)
        )
    token_jitter_ms = fit_token_jitter_ms(live_run, sim_run)
    if token_jitter_ms > 0:  # what running the sim with dynamo.token_jitter_ms set would give
        itl_ms, itl_weight, itl_time_s = with_delivery_noise(
            sim_run.itl_ms, sim_run.itl_weight, token_jitter_ms, sim_run.itl_time_s
        )
        sim_run = dataclasses.replace(sim_run, itl_ms=itl_ms, itl_weight=itl_weight, itl_time_s=itl_time_s)
    sim_m, live_m = summarize(sim_run), summarize(live_run)
    timing_info = {
        **dep.plan.describe(),
        "frontend_jitter_ms": round(sim_profile.dynamo.frontend_jitter_ms, 3),
        "token_jitter_ms": round(token_jitter_ms, 3),
    }
    report = ValidationReport(
        profile.name, topology.to_string(), c, n, timing_info, sim=sim_m, live=live_m, live_meta=live_run.meta
    )
    report.rows = compare(sim_m, live_m, sim_run, live_run)
    return report


def rows_frame(report: ValidationReport) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in report.rows])
