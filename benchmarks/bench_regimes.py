"""Regimes benchmark: TTFT P99, throughput and PoA-hat versus load on the paper profiles, with the knee.

Sweeps closed-loop concurrency on each paper profile at its paper topology (the profile's first
baseline) in the simulator and prints, per point, the steady-state TTFT P99, output throughput and
PoA-hat with their 95 % intervals, the regime label (autotune.regimes, docs/regimes.md) and the knee.

    python benchmarks/bench_regimes.py [-p paper-70b-1p5d ...] [--grid 16,32,64,...] [--router tau=1,omega=1 ...]

``--router`` repeats the sweep per router setting (default: Dynamo's, τ 0 ω 1); ``--seed`` picks the
request stream. The figures are today's simulator's: the point is the machinery, not a calibration.
"""

from __future__ import annotations

import argparse
import math
import time

from autotune import backends
from autotune.intervals import Interval
from autotune.perf import get_perf_model
from autotune.profile import Profile, load_profile, profile_topology
from autotune.scoring import TrialResult, score_point, score_sweep, step_timers
from autotune.topology import Topology

PAPER_PROFILES = ["paper-70b-1p5d", "paper-70b-1p2d", "paper-340b-1p2d"]


def fmt_interval(i: Interval, nd: int = 0) -> str:
    if not math.isfinite(i.value):
        return "-"
    if not (math.isfinite(i.lo) and math.isfinite(i.hi)):
        return f"{i.value:.{nd}f} [-]"
    return f"{i.value:.{nd}f} [{i.lo:.{nd}f}, {i.hi:.{nd}f}]"


def paper_topology(profile: Profile, router: str = "") -> Topology:
    """The profile's paper topology (its first baseline), with ``router`` settings if given."""
    shape = profile.baselines[0].split("@")[0]
    return profile_topology(profile, f"{shape}@{router}" if router else shape, "--router")


def run_sweep(profile: Profile, topo: Topology, concurrency: list[int], seed: int) -> TrialResult:
    """A steady-state closed-loop sweep in the simulator, scored and labelled as a trial is."""
    timers = step_timers(get_perf_model("roofline", profile), topo)
    points = []
    with backends.create("sim").deploy(profile, topo, trial_id="bench-regimes") as dep:
        for c in concurrency:
            run = dep.run_point(c, seed=seed, requests=profile.measurement.start_requests(c))
            points.append(score_point(run, timers, profile.engine.block_size))
    return score_sweep(profile, topo, concurrency, points)


def sweep(profile_name: str, grid: list[int] | None, router: str, seed: int) -> None:
    profile = load_profile(profile_name)
    topo = paper_topology(profile, router)
    concurrency = grid or list(profile.workload.concurrency)
    t0 = time.monotonic()
    result = run_sweep(profile, topo, concurrency, seed)
    wall = time.monotonic() - t0
    print(f"\n### {profile_name}: {topo.to_string()} (Dynamo {profile.dynamo.version}, seed {seed}, {wall:.0f} s)\n")
    print("| C | TTFT P99 ms [95 % CI] | output tok/s [95 % CI] | PoA-hat [95 % CI] | regime |")
    print("|---|---|---|---|---|")
    for p in result.points:
        m = p.metrics
        print(
            f"| {m.concurrency} | {fmt_interval(m.interval('ttft_p99_ms'))} | {fmt_interval(m.interval('output_tok_s'))} | "
            f"{fmt_interval(p.poa_interval, 3)} | {p.regime} |"
        )
    print(f"\nknee: {result.knee_concurrency if result.knee_concurrency is not None else 'none in the grid'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-p", "--profile", action="append", help="profile name (repeatable); default: the paper's three")
    ap.add_argument("--grid", help="comma-separated concurrency grid (default: the profile's)")
    ap.add_argument("--router", action="append", help="router settings, e.g. tau=1,omega=0 (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    grid = [int(x) for x in args.grid.split(",")] if args.grid else None
    for name in args.profile or PAPER_PROFILES:
        for router in args.router or [""]:
            sweep(name, grid, router, args.seed)


if __name__ == "__main__":
    main()
