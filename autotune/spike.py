"""Open-loop load plans for testing the controller, sized from what the topology was measured to do.

The ramp must really saturate and each phase must outlast the requests in it, else a "saturated"
phase is only a queue that never formed, or a phase's figures are the previous phase's tail. So:

* capacity: the throughput of the sweep's saturated points; a sweep that never saturated gets a
  closed-loop probe with twice as many clients as the topology has batch slots (so the engines are
  full and the rest queue): its steady throughput is the capacity;
* a phase lasts ``phase_e2e_multiple`` mean request durations, the E2E at the highest load the sweep
  measured below the knee (TTFT P50 + (mean output − 1) × mean ITL);
* the ramp climbs past the capacity (``overload_x``) to a spike (``spike_x``), then recovers;
  the calm plan fluctuates between half of and the load below the knee, never crossing it.

The controller's clock is scaled to the phase (at most ``phase_s / 8`` per update, the dwell the
same number of updates as configured), so it has the same number of looks at a phase as the real one
has at a phase of minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autotune.backends.sim import SimBackend
from autotune.controller import AdaptiveController, ControllerSettings
from autotune.controller_spec import ControllerEvalSpec
from autotune.metrics import PointMetrics, summarize
from autotune.perf import StepTimer
from autotune.poa import poa_hat, routing_regret
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.regimes import BELOW, SATURATED
from autotune.scoring import TrialResult
from autotune.topology import RouterSettings, Topology
from autotune.workload import ArrivalSchedule, RateSegment, mean_shape

UPDATES_PER_PHASE = 8


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float
    load_x: float  # offered rate over the measured capacity

    @property
    def overloaded(self) -> bool:
        return self.load_x > 1.0


@dataclass(frozen=True)
class LoadPlan:
    """Where the experiments' loads come from, and the phases of the two schedules."""

    capacity_rps: float
    capacity_source: str  # "sweep" or "probe C=<n>"
    below_knee_rps: float
    mean_e2e_s: float
    phase_s: float
    spike: tuple[Phase, ...]  # crosses the capacity
    calm: tuple[Phase, ...]  # fluctuates below the knee

    def schedule(self, phases: tuple[Phase, ...]) -> ArrivalSchedule:
        return ArrivalSchedule(tuple(RateSegment(p.start_s, p.load_x * self.capacity_rps) for p in phases))

    def requests(self, phases: tuple[Phase, ...]) -> int:
        """Enough arrivals to fill the phases (the Poisson count plus three standard deviations)."""
        expected = sum((p.end_s - p.start_s) * p.load_x * self.capacity_rps for p in phases)
        return int(math.ceil(expected + 3 * math.sqrt(expected) + 10))

    def as_dict(self) -> dict[str, object]:
        return {
            "capacity_rps": self.capacity_rps,
            "capacity_source": self.capacity_source,
            "below_knee_rps": self.below_knee_rps,
            "mean_e2e_s": self.mean_e2e_s,
            "phase_s": self.phase_s,
        }


def decode_slots(profile: Profile, topology: Topology) -> int:
    """Sequences the topology can decode at once (engine batch limit × decoding workers)."""
    workers = sum(1 for role, _ in topology.worker_tps() if role in ("decode", "agg"))
    return profile.engine.max_num_seqs * max(workers, 1)


def _fixed_length(profile: Profile) -> Profile:
    """The profile with adaptive run lengths off: a run has exactly the requests it is given."""
    return profile.model_copy(update={"measurement": profile.measurement.model_copy(update={"adaptive": False})})


def measure_capacity(profile: Profile, topology: Topology, result: TrialResult, *, seed: int) -> tuple[float, str]:
    """Requests per second the topology sustains once saturated (see the module docstring)."""
    sat = [p.metrics.req_s for p in result.points if p.regime == SATURATED and math.isfinite(p.metrics.req_s)]
    if sat:
        return max(sat), "sweep"
    c = 2 * decode_slots(profile, topology)
    dep = SimBackend().deploy(_fixed_length(profile), topology)
    run = dep.run_point(c, seed=seed, requests=3 * c + profile.workload.warmup_requests)
    m = summarize(run, level=profile.measurement.ci_level)
    return m.req_s, f"probe C={c}"


def _mean_e2e_s(profile: Profile, m: PointMetrics) -> float:
    osl = mean_shape(profile.workload).output_tokens
    return (m.ttft_p50_ms + max(osl - 1, 0) * m.itl_mean_ms) / 1000


def plan_load(
    profile: Profile, result: TrialResult, capacity_rps: float, capacity_source: str, spec: ControllerEvalSpec
) -> LoadPlan:
    """The spike and calm schedules for a topology whose sweep is ``result``."""
    below = [p for p in result.points if p.regime != SATURATED and math.isfinite(p.metrics.req_s)] or list(
        result.points[:1]
    )
    top = max(below, key=lambda p: p.metrics.req_s)
    below_knee = min(top.metrics.req_s, 0.8 * capacity_rps)
    e2e = _mean_e2e_s(profile, top.metrics)
    if not (math.isfinite(e2e) and e2e > 0):
        e2e = 1.0
    phase_s = spec.phase_e2e_multiple * e2e

    def phases(levels: list[tuple[str, float]]) -> tuple[Phase, ...]:
        return tuple(Phase(n, i * phase_s, (i + 1) * phase_s, x) for i, (n, x) in enumerate(levels))

    spike = phases(
        [
            ("ramp-40%", 0.4),
            ("ramp-80%", 0.8),
            (f"ramp-{spec.overload_x:.0%}", spec.overload_x),
            (f"spike-{spec.spike_x:.0%}", spec.spike_x),
            ("recovery-40%", 0.4),
        ]
    )
    k = below_knee / capacity_rps
    calm = phases([("calm-low", 0.5 * k), ("calm-high", k), ("calm-low-2", 0.5 * k), ("calm-high-2", k)])
    return LoadPlan(capacity_rps, capacity_source, below_knee, e2e, phase_s, spike, calm)


def scaled(settings: ControllerSettings, phase_s: float) -> ControllerSettings:
    """The controller on the experiment's clock: at most ``phase_s / 8`` per update, the dwell the same
    number of updates as ``settings`` has."""
    interval = min(settings.interval_s, phase_s / UPDATES_PER_PHASE)
    dwell_updates = settings.dwell_s / settings.interval_s
    return replace(settings, interval_s=interval, dwell_s=dwell_updates * interval)


@dataclass(frozen=True)
class PolicyRun:
    """One seed of one schedule under one policy: the requests and, for a controller, what it decided."""

    policy: str
    seed: int
    run: PointRun
    history: tuple[tuple[float, float, str], ...]  # controller (time, EWMA ms, regime) per update; () static
    watched: tuple[tuple[tuple[float, float, str], ...], ...] = ()  # the watchers' histories, in order


class Watchers:
    """Controllers that watch a run: each sees every update's TTFTs; only ``steer`` (if any) sets the router.

    A watcher's decisions are its decisions in the loop for as long as they would have set the same
    router as the run had: the run up to that moment is the run it would have steered. So one run
    serves every setting (the sensitivity study, sharing an update interval) whose routers never
    depart from the run's, and only the others need a run of their own (``routers``).
    """

    def __init__(self, settings: Sequence[ControllerSettings], steer: ControllerSettings | None = None) -> None:
        intervals = {s.interval_s for s in settings} | ({steer.interval_s} if steer is not None else set())
        if len(intervals) != 1:
            raise ValueError(f"watchers need one update interval, got {sorted(intervals)}")
        self.interval_s = intervals.pop()
        self.controllers = [AdaptiveController(s) for s in settings]
        self.steer = AdaptiveController(steer) if steer is not None else None

    def update(self, now_s: float, ttft_s: list[float]) -> RouterSettings | None:
        for c in self.controllers:
            c.update(now_s, ttft_s)
        return self.steer.update(now_s, ttft_s) if self.steer is not None else None


History = tuple[tuple[float, float, str], ...]


def routers(settings: ControllerSettings, history: History) -> tuple[RouterSettings, ...]:
    """The router a controller sets at each update (its first one, before any update, is the BELOW preset)."""
    return (settings.presets[BELOW],) + tuple(settings.presets[r] for _, _, r in history)


def run_policy(
    profile: Profile,
    topology: Topology,
    plan: LoadPlan,
    phases: tuple[Phase, ...],
    *,
    seed: int,
    router: RouterSettings,
    controller: ControllerSettings | None = None,
    watchers: Sequence[ControllerSettings] = (),
) -> PolicyRun:
    """The schedule through the simulator with a fixed router, or with ``controller`` in the loop; either
    way with ``watchers`` looking on."""
    dep = SimBackend().deploy(profile, topology.with_router(router))
    watch = Watchers(watchers, steer=controller) if watchers or controller is not None else None
    run = dep.run_point(-1, seed=seed, requests=plan.requests(phases), controller=watch, schedule=plan.schedule(phases))
    history = tuple(watch.steer.history) if watch is not None and watch.steer is not None else ()
    watched = tuple(tuple(c.history) for c in watch.controllers) if watch is not None else ()
    return PolicyRun("adaptive" if controller is not None else "static", seed, run, history, watched)


def phase_rows(
    pr: PolicyRun, phases: tuple[Phase, ...], timers: list[StepTimer], block_size: int
) -> list[dict[str, object]]:
    """Per phase of one run: requests, TTFT P99, mean E2E (arrivals in the phase), output tok/s (tokens
    completed in it), PoA-hat and the routing regret (routing decisions in it)."""
    df = pr.run.requests
    ok = df[df["status"] == "ok"]
    rows: list[dict[str, object]] = []
    for ph in phases:
        arr = ok[(ok["arrival_s"] >= ph.start_s) & (ok["arrival_s"] < ph.end_s)]
        done = ok[(ok["completion_s"] >= ph.start_s) & (ok["completion_s"] < ph.end_s)]
        ttft_ms = (arr["first_token_s"] - arr["arrival_s"]).to_numpy(dtype=float) * 1000
        e2e_s = (arr["completion_s"] - arr["arrival_s"]).to_numpy(dtype=float)
        p = poa_hat(pr.run.decisions, df, timers, block_size, time_range=(ph.start_s, ph.end_s))
        r = routing_regret(pr.run.decisions, timers, block_size, time_range=(ph.start_s, ph.end_s))
        rows.append(
            {
                "policy": pr.policy,
                "seed": pr.seed,
                "phase": ph.name,
                "load_x_capacity": ph.load_x,
                "start_s": ph.start_s,
                "end_s": ph.end_s,
                "requests": int(len(arr)),
                "poa_hat": p.value,
                "routing_regret": r.value,
                "ttft_p99_ms": float(np.percentile(ttft_ms, 99)) if len(ttft_ms) else math.nan,
                "mean_e2e_s": float(e2e_s.mean()) if len(e2e_s) else math.nan,
                "output_tok_s": float(done["output_tokens"].sum() / (ph.end_s - ph.start_s)),
            }
        )
    return rows
