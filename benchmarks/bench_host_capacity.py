"""Benchmark: the local Dynamo + mocker host's per-request costs, and the simulator's capacity against it.

Closed loop at saturation on ``dynamo-local`` (real Dynamo 1.6.1 frontend, KV router, mocker workers at
the backend's default speed-up 1, the load client on the same 2-vCPU host), then the simulator on the
same workload with the same mocker timing (``autotune validate``'s sim configuration):

1. *measure*: real req/s (steady state, 95 % interval) at each point, ``--repeats`` times (the CPU is
   shared with other work: the spread between repeats is printed, and the load average with each run);
2. *fit*: for each aggregated point, the frontend service (``frontend_request_ms`` on
   ``frontend_workers`` = the host's vCPUs) at which the simulator serves the real rate (bisection);
   least squares of those over (1, input tokens, output tokens) gives the per-request, per-input-token
   and per-output-token costs; then the frontend's hand-off work per disaggregated request
   (``frontend_handoff_ms``, on the same servers: on one host it is the same CPU) at which the
   disaggregated point matches;
3. *check*: real vs simulated capacity with the fitted costs (and with no queue, the simulator before
   issue 12) at every point, plus held-out lengths the fit never saw; the ratio sim/real.

    python benchmarks/bench_host_capacity.py [--repeats 2] [--requests 600] [--concurrency 96]

Prints the costs to put in ``autotune/host_costs.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autotune import host_costs  # noqa: E402
from autotune.backends.dynamo_local import DynamoLocalBackend  # noqa: E402
from autotune.backends.sim import SimBackend  # noqa: E402
from autotune.dynamo.mocker_timing import plan_timing  # noqa: E402
from autotune.metrics import summarize  # noqa: E402
from autotune.profile import Profile, profile_from_dict  # noqa: E402
from autotune.topology import parse_topology  # noqa: E402
from autotune.validate import mocker_equivalent  # noqa: E402

SPEEDUP = 1.0  # dynamo-local's default mocker speed-up
BASE: dict[str, Any] = {
    "name": "host-capacity",
    "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "search": {"operating_point": "grid"},
    "measurement": {"adaptive": False},
}
# (topology, input tokens, output tokens, role): "fit" points set the costs, "held-out" only check them
POINTS: tuple[tuple[str, int, int, str], ...] = (
    ("3A4", 128, 16, "fit"),
    ("3A4", 128, 64, "fit"),
    ("3A4", 512, 16, "fit"),
    ("1P4-2D4", 128, 16, "fit"),
    ("3A4", 256, 32, "held-out"),
    ("1P4-2D4", 256, 32, "held-out"),
)
SIM_REQUESTS = 2000
# every queue knob, so mocker_equivalent fills none of them with the host defaults being fitted here
NO_QUEUE = {
    "frontend_workers": 0,
    "frontend_request_ms": 0.0,
    "frontend_input_token_us": 0.0,
    "frontend_output_token_us": 0.0,
    "frontend_handoff_ms": 0.0,
    "frontend_response_ms": 0.0,
    "request_cost_ms": 0.0,
    "handoff_cost_ms": 0.0,
}


@dataclass
class Point:
    topology: str
    isl: int
    osl: int
    concurrency: int
    role: str
    real: list[float] = field(default_factory=list)

    @property
    def real_mean(self) -> float:
        return statistics.fmean(self.real)

    @property
    def spread(self) -> float:
        return (max(self.real) - min(self.real)) / self.real_mean if len(self.real) > 1 else 0.0

    def label(self) -> str:
        return f"{self.topology:>8} ISL {self.isl:3d} OSL {self.osl:3d} C={self.concurrency:3d}"


def make_profile(isl: int, osl: int, requests: int, costs: dict[str, float]) -> Profile:
    raw: dict[str, Any] = {
        **BASE,
        "workload": {
            "templates": 4,
            "prefix_tokens": min(64, isl),
            "input_tokens": {"dist": "fixed", "value": isl},
            "output_tokens": {"dist": "fixed", "value": osl},
            "concurrency": [8],
            "requests_per_point": requests,
            "warmup_requests": requests // 10,
            "cooldown_requests": requests // 10,
        },
        "dynamo": {k: v for k, v in {**NO_QUEUE, **costs}.items() if k.startswith("frontend_")},
        "engine": {"request_cost_ms": costs.get("request_cost_ms", 0.0)},
        "kv_transfer": {"handoff_cost_ms": costs.get("handoff_cost_ms", 0.0)},
    }
    return profile_from_dict(raw, "host-capacity (bench)")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} vCPUs"


def measure(points: list[Point], requests: int, repeats: int) -> None:
    groups: dict[tuple[str, int, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.topology, p.isl, p.osl), []).append(p)
    for r in range(repeats):
        for (topology, isl, osl), pts in groups.items():
            prof = make_profile(isl, osl, requests, NO_QUEUE)
            backend = DynamoLocalBackend(timing="roofline", speedup=SPEEDUP)
            with backend.deploy(prof, parse_topology(topology), trial_id="hostcap") as dep:
                for p in pts:
                    m = summarize(dep.run_point(p.concurrency, seed=r, requests=requests))
                    p.real.append(m.req_s)
                    print(
                        f"  live {p.label()} rep {r}: {m.req_s:6.1f} req/s [{m.req_s_lo:.1f}, {m.req_s_hi:.1f}]"
                        f"{'' if m.steady else ' (not steady)'}  ({load()})",
                        flush=True,
                    )


def sim_req_s(p: Point, costs: dict[str, float]) -> float:
    prof = make_profile(p.isl, p.osl, SIM_REQUESTS, costs)
    topo = parse_topology(p.topology)
    with tempfile.TemporaryDirectory() as tables:  # the mockers' step-time tables, as the live run had them
        name, opts = plan_timing(prof, topo, Path(tables), timing="roofline", speedup=SPEEDUP).sim_backend_options()
        run = SimBackend(name, **opts).deploy(mocker_equivalent(prof), topo).run_point(p.concurrency, seed=0)
    return summarize(run).req_s


def solve(p: Point, costs: dict[str, float], knob: str, hi: float) -> float:
    """The value of ``knob`` at which the simulator serves ``p``'s real rate (0 when it already serves less)."""
    target = p.real_mean
    if sim_req_s(p, {**costs, knob: 0.0}) <= target:
        return 0.0
    lo = 0.0
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sim_req_s(p, {**costs, knob: mid}) > target else (lo, mid)
    return (lo + hi) / 2


def fit(points: list[Point]) -> dict[str, float]:
    k = host_costs.HOST_FRONTEND_WORKERS
    base = {**NO_QUEUE, "frontend_workers": k}
    rows, ys = [], []
    for p in points:
        if p.role == "fit" and "A" in p.topology:
            s = solve(p, base, "frontend_request_ms", 4000.0 * k / p.real_mean)
            print(f"  {p.label()}: real {p.real_mean:.1f} req/s -> frontend service {s:.2f} ms on {k} servers")
            rows.append([1.0, p.isl / 1000, p.osl / 1000])  # ms, then µs per token (ms per 1000 tokens)
            ys.append(s)
    a_ms, b_us, c_us = (max(float(v), 0.0) for v in np.linalg.lstsq(np.array(rows), np.array(ys), rcond=None)[0])
    # before routing, at most the unloaded route delay (at C=1 a request is routed that soon): the rest
    # of the per-request work is charged after the last token (frontend_response_ms)
    dyn = make_profile(16, 16, 100, NO_QUEUE).dynamo
    before_ms = min(a_ms, dyn.frontend_overhead_ms - dyn.frontend_jitter_ms)
    print(
        f"  per-request {a_ms:.2f} ms in all: {before_ms:.2f} before routing, {a_ms - before_ms:.2f} after the last token"
    )
    costs = {
        **base,
        "frontend_request_ms": round(before_ms, 3),
        "frontend_response_ms": round(a_ms - before_ms, 3),
        "frontend_input_token_us": round(b_us, 2),
        "frontend_output_token_us": round(c_us, 2),
    }
    handoffs = []
    for p in points:
        if p.role == "fit" and "P" in p.topology:
            h = solve(p, costs, "frontend_handoff_ms", 4000.0 * k / p.real_mean)
            print(f"  {p.label()}: real {p.real_mean:.1f} req/s -> frontend hand-off {h:.2f} ms on {k} servers")
            handoffs.append(h)
    costs["frontend_handoff_ms"] = round(statistics.fmean(handoffs), 3) if handoffs else 0.0
    return costs


def check(points: list[Point], costs: dict[str, float]) -> None:
    print(f"{'point':<40}{'real req/s':>16}{'sim fitted':>12}{'ratio':>7}{'sim no queue':>14}{'ratio':>7}")
    for p in points:
        fitted, free = sim_req_s(p, costs), sim_req_s(p, NO_QUEUE)
        real = f"{p.real_mean:.1f} ±{p.spread / 2:.0%}"
        print(
            f"{p.label() + ' ' + p.role:<40}{real:>16}{fitted:>12.1f}{fitted / p.real_mean:>7.2f}"
            f"{free:>14.1f}{free / p.real_mean:>7.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", default="96", help="comma-separated saturating concurrencies")
    a = ap.parse_args()
    t0 = time.perf_counter()
    cs = [int(c) for c in a.concurrency.split(",")]
    points = [Point(t, i, o, c, role) for t, i, o, role in POINTS for c in cs]
    print(f"measure: mockers x{SPEEDUP:g}, closed loop, {a.requests} requests a point; {load()}")
    measure(points, a.requests, a.repeats)
    print(f"fit ({load()}):")
    costs = fit(points)
    print("fitted:", " ".join(f"{k}={v}" for k, v in costs.items()))
    print("check (ratio = simulated / real capacity; ± = half the spread between repeats):")
    check(points, costs)
    print(f"wall {time.perf_counter() - t0:.0f} s; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
