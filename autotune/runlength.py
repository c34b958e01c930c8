"""How long a load point runs: the adaptive run-length rule, one for the simulator and the live backends.

A point runs until every headline figure's relative CI half-width is within the profile's target
and its steady state was reached (``converged``), or until ``measurement.max_requests``; a live point
also stops growing at ``measurement.live_time_budget_s``. Both continue a growing point rather than
re-run it: the simulator extends its paused run (``autotune.backends.sim``), a live point continues
its burst (``autotune.loadgen.live_point``). ``run_meta`` is what a point
records about its length, under the same names on every backend (docs/measurement.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autotune.metrics import PointMetrics
from autotune.profile import MeasurementSpec

# why a point stopped growing (``stop_reason``)
TARGETS_MET = "targets_met"
MAX_REQUESTS = "max_requests"
TIME_BUDGET = "time_budget"  # live: measurement.live_time_budget_s
WALL_BOUND = "wall_bound"  # live: the backend's hard bound on one burst (max_burst_s) cut it short
FIXED = "fixed_length"  # not adaptive: the length was given (measurement.adaptive false, ramps, spikes)


@dataclass(frozen=True)
class Precision:
    """How far a point is from its targets: the limiting figure and its half-width / target."""

    figure: str  # "" when no figure has an interval to judge
    ratio: float  # <= 1: within target
    steady: bool

    @property
    def met(self) -> bool:
        return self.ratio <= 1.0 and self.steady


def precision(m: PointMetrics, meas: MeasurementSpec) -> Precision:
    name, ratio = m.worst_precision(meas.targets)
    return Precision(name, ratio, m.steady)


def growth(p: Precision) -> float:
    """How many times longer the point should run: a half-width shrinks like 1/sqrt(n), so ratio²,
    aiming 20 % past the target; without a steady state yet, or when a figure has no interval at all
    (a P99 from too few samples to bound it), double."""
    return 1.2 * p.ratio**2 if p.steady and math.isfinite(p.ratio) else 2.0


def sim_next_requests(p: Precision, n: int, meas: MeasurementSpec) -> int:
    """The simulator's next length for a point judged at ``n`` requests: at least ×1.5, at most ×4, capped.

    A simulated point continues its run (nothing is re-simulated), so a step costs only the new
    requests and another look at the figures: short steps overshoot the length the targets need by
    less, and a noisy early estimate of the precision (few batches) cannot send a point to the cap at once.
    """
    return min(meas.max_requests, int(n * max(1.5, min(4.0, growth(p)))))


@dataclass(frozen=True)
class Extension:
    """A live burst's decision at a checkpoint: send ``requests`` more, or stop (and why)."""

    requests: int
    stop_reason: str = ""


def live_extension(
    p: Precision,
    *,
    seen: int,
    done: int,
    planned: int,
    elapsed_s: float,
    budget_s: float,
    min_step: int,
    meas: MeasurementSpec,
) -> Extension:
    """Whether a running live burst continues its stream, judged on its first ``seen`` requests (all
    complete) after ``elapsed_s``, with ``done`` complete and ``planned`` handed out or due.

    It aims at the same length as the simulator (``growth`` of what was judged) but extends at most by
    what is already planned per step (it judges again, on more data, before that runs out), at least
    by ``min_step``, and never past the time budget at the completion rate seen so far.
    """
    if p.met:
        return Extension(0, TARGETS_MET)
    if planned >= meas.max_requests:
        return Extension(0, MAX_REQUESTS)
    want = int(seen * min(growth(p), 8.0)) - planned
    more = min(max(want, min_step), planned, meas.max_requests - planned)
    rate = done / elapsed_s if done > 0 and elapsed_s > 0 else math.inf  # nothing done yet: no rate to judge by
    fits = rate * (budget_s - elapsed_s) - (planned - done)
    if fits < more:
        if fits < min_step:
            return Extension(0, TIME_BUDGET)
        more = int(fits)
    return Extension(more)


def run_meta(p: Precision, requests_run: int, stop_reason: str) -> dict[str, Any]:
    """What a point records about its length (``PointRun.meta``)."""
    return {
        "requests_run": requests_run,
        "converged": p.met,
        "limiting_figure": p.figure,
        "precision_ratio": p.ratio,
        "stop_reason": stop_reason,
    }
