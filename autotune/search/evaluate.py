"""Run one trial: deploy a topology on a backend, sweep the concurrency grid, score it, tear down.

This is where a trial is deployed and measured; ``autotune.scoring`` says what it is worth. The
function is picklable (plain arguments) so the study can run simulated trials in worker processes.
"""

from __future__ import annotations

from typing import Any

from autotune import backends
from autotune.perf import get_perf_model
from autotune.profile import Profile
from autotune.scoring import PointScore, TrialResult, score_point, score_sweep, step_timers
from autotune.topology import Topology


def evaluate_topology(
    profile: Profile,
    topology: Topology,
    backend: str = "sim",
    *,
    seed: int,
    concurrency: list[int] | None = None,
    requests: int | None = None,
    backend_options: dict[str, Any] | None = None,
    trial_id: str = "",
) -> TrialResult:
    """Deploy, sweep, score, tear down."""
    concurrency = list(concurrency or profile.workload.concurrency)
    be = backends.create(backend, **(backend_options or {}))
    timers = step_timers(get_perf_model((backend_options or {}).get("perf_model", "roofline"), profile), topology)
    points: list[PointScore] = []
    meta: dict[str, Any] = {}
    with be.deploy(profile, topology, trial_id=trial_id) as dep:
        for c in concurrency:
            run = dep.run_point(c, seed=seed, requests=requests)
            points.append(score_point(run, timers, profile.engine.block_size))
            meta = {k: v for k, v in run.meta.items() if isinstance(v, (str, int, float, bool))}
    return score_sweep(profile, topology, concurrency, points, meta)
