"""Benchmark: one full dynamo-local trial (start, ready, 500-request burst at C=32, stop).

Prints the wall time of each phase and autotune's own client CPU time per request, to show
the client is not the bottleneck. Target (issue 4): the whole trial in at most 20 s here.
With ``--adaptive BUDGET_S`` the point instead continues its stream until its figures meet the
profile's precision targets or the time budget (issue 11), and prints how long it ran, why it
stopped, and its headline figures with their intervals.

    python benchmarks/bench_dynamo_local.py [--topology 2A4] [--requests 500] [--concurrency 32] [--adaptive 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autotune.backends.dynamo_local import DynamoLocalBackend  # noqa: E402
from autotune.metrics import summarize  # noqa: E402
from autotune.profile import _load_raw, find_profile, profile_from_dict  # noqa: E402
from autotune.records import PointRun  # noqa: E402
from autotune.topology import parse_topology  # noqa: E402

DEFAULT = {
    "name": "bench-h100-70b",
    "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile",
        default=None,
        help="profile to take cluster/model/engine from (default: Llama-3.1-70B FP8 on 8 H100)",
    )
    ap.add_argument("--topology", default="2A4")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=32)
    ap.add_argument("--timing", default="roofline")
    ap.add_argument("--speedup", type=float, default=1.0)
    ap.add_argument("--adaptive", type=float, default=None, metavar="BUDGET_S", help="adaptive length, this budget")
    ap.add_argument("--variable", action="store_true", help="uniform lengths (ISL ±25 %%, OSL ±50 %%), not fixed")
    a = ap.parse_args()
    raw = _load_raw(find_profile(a.profile), a.profile) if a.profile else dict(DEFAULT)
    raw["workload"] = {
        "templates": 8,
        "prefix_tokens": min(64, a.isl),
        "input_tokens": spread(a.isl, 0.25) if a.variable else {"dist": "fixed", "value": a.isl},
        "output_tokens": spread(a.osl, 0.5) if a.variable else {"dist": "fixed", "value": a.osl},
        "concurrency": [a.concurrency],
        "requests_per_point": a.requests,
        "warmup_requests": a.requests // 10,
        "cooldown_requests": a.requests // 10,
    }
    raw["search"] = {"operating_point": "grid"}
    raw["measurement"] = {"adaptive": False} if a.adaptive is None else {"live_time_budget_s": a.adaptive}
    prof = profile_from_dict(raw, f"{a.profile or DEFAULT['name']} (bench)")
    topo = parse_topology(a.topology)
    backend = DynamoLocalBackend(timing=a.timing, speedup=a.speedup)
    cpu0 = os.times()
    t0 = time.perf_counter()
    dep = backend.deploy(prof, topo, trial_id="bench")
    t_ready = time.perf_counter()
    try:
        run = dep.run_point(a.concurrency, seed=0)
    finally:
        t_burst = time.perf_counter()
        dep.close()
    t_end = time.perf_counter()
    cpu1 = os.times()
    m = summarize(run)
    n = len(run.requests)
    ok = int((run.requests["status"] == "ok").sum())
    print(
        f"dynamo-local trial: {prof.name} {topo.to_string()}, {n} requests ISL {a.isl} OSL {a.osl} at C={a.concurrency}, "
        f"timing {run.meta['timing']} speedup {a.speedup:g}"
    )
    print(f"  start+ready        {t_ready - t0:7.2f} s")
    print(f"  burst + analysis   {t_burst - t_ready:7.2f} s  (burst {run.meta['burst_s']:.2f} s, {ok}/{n} ok)")
    print(f"  stop               {t_end - t_burst:7.2f} s")
    print(f"  total trial        {t_end - t0:7.2f} s  (target <= 20 s)")
    print(
        f"  throughput         {m.req_s:7.1f} req/s, {m.output_tok_s:.0f} tok/s; TTFT p50 {m.ttft_p50_ms:.1f} ms "
        f"p99 {m.ttft_p99_ms:.1f} ms; ITL mean {m.itl_mean_ms:.2f} ms"
    )
    print(
        f"  client CPU         {run.meta['client_cpu_s']:7.2f} s during the burst = "
        f"{run.meta['client_cpu_ms_per_request']:.2f} ms/request "
        f"({run.meta['client_cpu_s'] / run.meta['burst_s']:.0%} of one core)"
    )
    print(
        f"  autotune process   {cpu1.user - cpu0.user + cpu1.system - cpu0.system:7.2f} s CPU in total "
        f"(incl. startup, log parsing, replay)"
    )
    print(f"  router replay      {run.meta['replay']}")
    if a.adaptive is not None:
        print_run_length(run)
    return 0


def spread(mean: int, rel: float) -> dict[str, object]:
    return {"dist": "uniform", "min": max(1, round(mean * (1 - rel))), "max": round(mean * (1 + rel))}


def print_run_length(run: PointRun) -> None:
    meta, m = run.meta, run.summary
    print(
        f"  run length         {meta['requests_run']} requests in {meta['stream_parts']} parts, stopped: "
        f"{meta['stop_reason']} (budget {meta['time_budget_s']:g} s); converged {meta['converged']}, "
        f"limiting {meta['limiting_figure']} at {meta['precision_ratio']:.2f}x its target; steady {m.steady}, "
        f"{m.requests} measured; clients stalled {meta['client_stalled_s']:.3f} s"
    )
    for name in ("ttft_p50_ms", "ttft_p99_ms", "itl_mean_ms", "itl_p99_ms", "e2e_p99_ms", "output_tok_s"):
        iv = m.interval(name)
        print(f"  {name:18s} {iv.value:9.2f} [{iv.lo:.2f}, {iv.hi:.2f}]  (±{iv.rel_half_width:.1%})")
    for check in meta["run_length_checks"]:
        print(f"  check              {check}")


if __name__ == "__main__":
    sys.exit(main())
