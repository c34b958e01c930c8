"""Run one trial: deploy a topology on a backend, sweep the concurrency grid, score it, tear down.

This is where a trial is deployed and measured; ``autotune.scoring`` says what it is worth. The
function is picklable (plain arguments) so the study can run simulated trials in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotune import backends
from autotune.backends.base import Backend
from autotune.calibrate.points import save_point
from autotune.perf import get_perf_model
from autotune.profile import Profile
from autotune.scoring import PointScore, TrialResult, meets_slo, score_point, score_sweep, step_timers
from autotune.topology import Topology


def evaluate_topology(
    profile: Profile,
    topology: Topology,
    backend: str | Backend = "sim",
    *,
    seed: int,
    concurrency: list[int] | None = None,
    requests: int | None = None,
    backend_options: dict[str, Any] | None = None,
    trial_id: str = "",
    records_dir: Path | None = None,
) -> TrialResult:
    """Deploy, sweep, score, tear down (or hand back to a ``Backend`` instance that keeps deployments).

    A live deployment's ``redeploy`` and ``deploy_s`` join the trial's meta. With ``records_dir`` each
    point's per-request records are kept there (``<trial_id>-c<C>``) for ``autotune.calibrate``.
    """
    concurrency = list(concurrency or profile.workload.concurrency)
    be = backend if isinstance(backend, Backend) else backends.create(backend, **(backend_options or {}))
    timers = step_timers(get_perf_model((backend_options or {}).get("perf_model", "roofline"), profile), topology)
    points: list[PointScore] = []
    meta: dict[str, Any] = {}
    with be.deploy(profile, topology, trial_id=trial_id) as dep:

        def measure(c: int) -> PointScore:
            nonlocal meta
            run = dep.run_point(c, seed=seed, requests=requests or profile.measurement.start_requests(c))
            meta = {k: v for k, v in run.meta.items() if isinstance(v, (str, int, float, bool))}
            if records_dir is not None:
                save_point(run, topology, profile, Path(records_dir) / f"{trial_id or 'trial'}-c{c}")
            return score_point(run, timers, profile.engine.block_size)

        points = [measure(c) for c in concurrency]
        if profile.search.operating_point == "capacity":
            concurrency, points = _bisect_capacity(profile, concurrency, points, measure)
        if dep.deploy_s is not None:
            meta.update(redeploy=dep.redeploy, deploy_s=dep.deploy_s)
    return score_sweep(profile, topology, concurrency, points, meta)


def _bisect_capacity(
    profile: Profile, concurrency: list[int], points: list[PointScore], measure: Callable[[int], PointScore]
) -> tuple[list[int], list[PointScore]]:
    """Refine the highest SLO-meeting load between the grid's last pass and its first miss (bisection).

    Every point measured joins the sweep, so the regimes and the report see them all.
    """
    by_c = dict(zip(concurrency, points, strict=True))
    for _ in range(profile.search.capacity_steps):
        ok = [c for c, p in by_c.items() if meets_slo(profile, p.metrics)]
        lo = max(ok, default=None)
        misses = [c for c in by_c if lo is not None and c > lo and not meets_slo(profile, by_c[c].metrics)]
        if lo is None or not misses:
            break  # nothing passes, or the whole grid passes: capacity is at an end of the grid
        hi = min(misses)
        mid = (lo + hi) // 2
        if mid in by_c:
            break  # adjacent loads: resolved to one client
        by_c[mid] = measure(mid)
    order = sorted(by_c)
    return order, [by_c[c] for c in order]
