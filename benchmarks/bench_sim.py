"""Simulator speed and memory: 10,000 requests of the paper's 70B 1P/5D profile at C=128 on one core.

Usage: ``python benchmarks/bench_sim.py [--requests N] [--runs R]``. Prints simulated requests per
second (median of the runs, wall clock of the simulation proper: workload draw, event loop and the
per-request table) and peak memory (tracemalloc peak of one run, and the process's ru_maxrss).
Targets (issue 2): at least 20,000 requests/s and at most 500 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import tracemalloc

from autotune.backends.sim import SimBackend
from autotune.metrics import summarize
from autotune.profile import load_profile
from autotune.topology import parse_topology

TARGET_REQ_S = 20_000
TARGET_MB = 500


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper-70b-1p5d")
    ap.add_argument("--topology", default="1P4-5D4")
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    pinned = False
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = True

    prof = load_profile(args.profile)
    dep = SimBackend("roofline").deploy(prof, parse_topology(args.topology), trial_id="bench")
    dep.run_point(args.concurrency, seed=prof.seed, requests=500)  # warm imports and caches

    rates = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        run = dep.run_point(args.concurrency, seed=prof.seed + i, requests=args.requests)
        dt = time.perf_counter() - t0
        rates.append(args.requests / dt)
        done = int((run.requests["status"] == "ok").sum())
        print(
            f"run {i + 1}: {dt:.3f} s, {args.requests / dt:,.0f} req/s, {done} completed, "
            f"{run.meta['events']:,} events",
            file=sys.stderr,
        )

    tracemalloc.start()
    run = dep.run_point(args.concurrency, seed=prof.seed, requests=args.requests)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    m = summarize(run)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    rate = statistics.median(rates)
    peak_mb = peak / 1e6
    rss_mb = rss_kb * 1024 / 1e6
    print(
        f"profile {prof.name}, topology {args.topology}, C={args.concurrency}, {args.requests} requests, "
        f"one core pinned: {pinned}"
    )
    print(f"simulated requests/s (median of {args.runs}): {rate:,.0f}   (target >= {TARGET_REQ_S:,})")
    # On a shared VM, CPU steal slows some runs by up to 2x; the best run is the machine's own speed
    # (the convention of Python's timeit), the median what a user sees on a busy host.
    print(f"simulated requests/s (best of {args.runs}): {max(rates):,.0f}   spread {min(rates):,.0f}-{max(rates):,.0f}")
    print(f"tracemalloc peak: {peak_mb:.1f} MB   ru_maxrss: {rss_mb:.1f} MB   (target <= {TARGET_MB} MB)")
    print(f"point: {m.output_tok_s:,.0f} tok/s, TTFT p99 {m.ttft_p99_ms:.1f} ms, ITL p50 {m.itl_p50_ms:.2f} ms")
    ok = rate >= TARGET_REQ_S and max(peak_mb, rss_mb) <= TARGET_MB
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
