#!/usr/bin/env python3
"""The live controller on a real dynamo-local 1.6.1 stack: static vs adaptive, switch cost, sim vs live.

One stack (3 aggregated mocker workers, tests/control/live_stack.py), calibrated (baseline TTFT P99 at
one request in flight, capacity at twice the batch slots), then the same open-loop spike schedule
(ramp 40 %, spike 200 %, recovery 30 % of capacity; the same seed, so the same requests and arrivals)
twice through the controller's proxy: advisory (static router; the controller only watches) and
``--apply`` (adaptive). Per phase: TTFT P99 with a 95 % batch-means interval (autotune.intervals,
5 batches by arrival time; P90 too, as a phase of a few hundred requests cannot bound its P99). Switch cost from the controller's record. The simulator runs the same
phases at its own measured capacity (same load multiples, same seed) with the same controller
multiples of its own baseline (autotune.spike.run_policy).

Usage: PYTHONPATH=. python3 benchmarks/bench_control_live.py [--seed 7] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autotune.backends.sim import SimBackend  # noqa: E402
from autotune.controller import ControllerSettings  # noqa: E402
from autotune.intervals import Interval, batch_index, quantile_interval  # noqa: E402
from autotune.metrics import summarize  # noqa: E402
from autotune.perf import get_perf_model  # noqa: E402
from autotune.scoring import step_timers  # noqa: E402
from autotune.spike import Phase, PolicyRun, phase_rows, run_policy  # noqa: E402
from tests.control.live_stack import (  # noqa: E402
    PRESETS,
    ControllerProcess,
    LiveStack,
    calibrate,
    phase_of,
    regime_timeline,
    run_schedule,
    schedule_bodies,
    spike_plan,
    write_settings,
)

BATCHES, LEVEL = 5, 0.95


def fmt(iv: Interval) -> str:
    if not math.isfinite(iv.value):
        return "n/a"
    if not (math.isfinite(iv.lo) and math.isfinite(iv.hi)):
        return f"{iv.value:8.0f} [too few samples for an interval]"
    return f"{iv.value:8.0f} [{iv.lo:.0f}, {iv.hi:.0f}]"


def live_phases(burst, phases: tuple[Phase, ...]) -> dict[str, tuple[int, Interval, Interval]]:
    ok = [r for r in burst.records if r.status == "ok"]
    send = np.array([r.send_s for r in ok])
    ttft = np.array([(r.first_token_s - r.send_s) * 1000 for r in ok])
    out = {}
    for p in phases:
        m = (send >= p.start_s) & (send < p.end_s)
        b = batch_index(send[m], p.start_s, p.end_s, BATCHES)
        p99 = quantile_interval(ttft[m], b, BATCHES, 0.99, LEVEL)
        out[p.name] = (int(m.sum()), p99, quantile_interval(ttft[m], b, BATCHES, 0.90, LEVEL))
    return out


def sim_phases(pr: PolicyRun, phases: tuple[Phase, ...]) -> dict[str, tuple[int, Interval, Interval]]:
    df = pr.run.requests
    ok = df[df["status"] == "ok"]
    arr = ok["arrival_s"].to_numpy(dtype=float)
    ttft = (ok["first_token_s"] - ok["arrival_s"]).to_numpy(dtype=float) * 1000
    out = {}
    for p in phases:
        m = (arr >= p.start_s) & (arr < p.end_s)
        b = batch_index(arr[m], p.start_s, p.end_s, BATCHES)
        p99 = quantile_interval(ttft[m], b, BATCHES, 0.99, LEVEL)
        out[p.name] = (int(m.sum()), p99, quantile_interval(ttft[m], b, BATCHES, 0.90, LEVEL))
    return out


def simulate(live: LiveStack, scale: float, seed: int, theta_x: tuple[float, float]) -> None:
    prof, topo = live.profile, live.topology.with_router(PRESETS["below"])
    dep = SimBackend().deploy(prof, topo)
    base = summarize(dep.run_point(1, seed=seed + 1, requests=24))
    slots = prof.engine.max_num_seqs * len(topo.worker_tps())
    full = summarize(dep.run_point(2 * slots, seed=seed + 2, requests=8 * slots))
    settings = ControllerSettings(
        base.ttft_p99_ms, *theta_x, ewma_alpha=0.3, interval_s=1.0, dwell_s=3.0, presets=dict(PRESETS)
    )
    plan, phases = spike_plan(full.req_s, scale)
    print(f"\nsimulator: baseline TTFT P99 {base.ttft_p99_ms:.0f} ms, capacity {full.req_s:.2f} req/s")
    timers = step_timers(get_perf_model("roofline", prof), topo)
    runs = {
        "static": run_policy(prof, topo, plan, phases, seed=seed, router=PRESETS["below"]),
        "adaptive": run_policy(prof, topo, plan, phases, seed=seed, router=PRESETS["below"], controller=settings),
    }
    for name, pr in runs.items():
        rows = {r["phase"]: r for r in phase_rows(pr, phases, timers, prof.engine.block_size)}
        for ph, (n, iv, p90) in sim_phases(pr, phases).items():
            poa = rows[ph]["poa_hat"]
            print(f"  sim {name:8s} {ph:14s} n={n:4d} TTFT P99 ms {fmt(iv)}  P90 {fmt(p90)}  PoA-hat {poa:.3f}")
    changes, last = [], None
    for t, _ewma, regime in runs["adaptive"].history:
        if regime != last:
            changes.append(f"{t:.0f}s {regime} ({phase_of(t, phases)})")
            last = regime
    print("  sim regime timeline: " + ", ".join(changes))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="phase durations x this (1.0: 20 s, 15 s, 45 s)")
    a = ap.parse_args()
    t_start = time.monotonic()
    live = LiveStack.start()
    try:
        cal = calibrate(live)
        print(f"live: baseline TTFT P99 {cal.baseline_ttft_p99_ms:.0f} ms, capacity {cal.capacity_rps:.2f} req/s")
        settings = cal.settings()
        print(
            f"controller: theta1 {settings.theta1_ms:.0f} ms ({settings.theta1_x:.2f}x), theta2 "
            f"{settings.theta2_ms:.0f} ms ({settings.theta2_x:.2f}x), 1 s updates, dwell 3 s"
        )
        plan, phases = spike_plan(cal.capacity_rps, a.scale)
        bodies, arrivals = schedule_bodies(live, plan, phases, a.seed)
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            path = write_settings(Path(tmp) / "recommended.yaml", settings)
            for policy, apply in (("static", False), ("adaptive", True)):
                d = Path(tmp) / policy
                d.mkdir()
                ctl = ControllerProcess.start(live, path, d, apply=apply, extra=("--rollback-margin", "100"))
                try:
                    burst = run_schedule(ctl.proxy_url, bodies, arrivals)
                finally:
                    code = ctl.stop()
                results[policy] = (burst, ctl.rows(), code)
        print(
            f"\nschedule: {len(bodies)} requests, phases "
            + ", ".join(f"{p.name} {p.end_s - p.start_s:.0f}s" for p in phases)
        )
        for policy, (burst, rows, code) in results.items():
            lost = sum(r.status != "ok" for r in burst.records)
            print(f"\nlive {policy} (controller exit {code}): {len(burst.records)} sent, {lost} not ok")
            for ph, (n, iv, p90) in live_phases(burst, phases).items():
                print(f"  live {policy:8s} {ph:14s} n={n:4d} TTFT P99 ms {fmt(iv)}  P90 {fmt(p90)}")
            tl = regime_timeline(rows, burst.t0_wall)
            print("  regime timeline: " + ", ".join(f"{t:.0f}s {r} ({phase_of(t, phases)})" for t, r in tl))
            for s in (r for r in rows if r["type"] == "switch"):
                t = s["wall_s"] - burst.t0_wall
                print(
                    f"  switch {s['kind']:8s} at {t:.0f}s {s['regime_from']}->{s['regime_to']}: "
                    f"{s.get('duration_s', float('nan')):.1f} s, requests affected {s.get('requests_affected')}, "
                    f"{s['reason']}"
                )
        simulate(live, a.scale, a.seed, (settings.theta1_x, settings.theta2_x))
        print("\nPoA-hat live: not reported (frontends the controller starts do not log routing decisions)")
    finally:
        live.stop()
    print(f"\nwall {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
