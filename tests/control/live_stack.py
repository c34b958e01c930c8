"""A real dynamo-local stack, an open-loop spike schedule and ``autotune control`` as its own process.

Shared by the live test (tests/control/test_control_live.py) and benchmarks/bench_control_live.py.

The stack: 3 aggregated mocker workers behind one KV-routed frontend (routing has choices), each worker
with 2 batch slots and mockers at a quarter of real speed, so the engines — not this 2-core host —
saturate first: a spike past capacity queues in the engines and the frontend's TTFT sees it.
Capacity and the baseline TTFT P99 are measured on the stack before each schedule, and the
controller's thresholds are multiples of that baseline (as ``autotune run`` derives them).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from autotune.control.observe import read_record
from autotune.control.settings import settings_document
from autotune.control.source import parse_buckets
from autotune.controller import ControllerSettings
from autotune.dynamo import install
from autotune.dynamo.mocker_timing import plan_timing
from autotune.dynamo.model_dir import load_words
from autotune.dynamo.stack import DynamoStack, free_port, new_work_dir
from autotune.loadgen.client import BurstConfig, BurstResult, run_burst
from autotune.loadgen.prompts import Vocabulary, render_bodies, render_stream
from autotune.profile import Profile, profile_from_dict
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.spike import LoadPlan, Phase
from autotune.topology import RouterSettings, Topology, parse_topology
from autotune.workload import ArrivalSchedule, RateSegment, request_stream
from tests.conftest import ROOT

TOPOLOGY = "3A4"
SPEEDUP = 0.25
PROFILE: dict[str, Any] = {
    "name": "control-live",
    "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "engine": {"max_num_seqs": 2},
    "search": {"operating_point": "grid"},
    "workload": {
        "templates": 4,
        "prefix_tokens": 64,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [4],
        "requests_per_point": 40,
        "warmup_requests": 4,
        "cooldown_requests": 4,
    },
    "measurement": {"adaptive": False},
}
# presets that differ, so a regime change is a real switch (the paper's, Table 2)
PRESETS = {
    BELOW: RouterSettings(temperature=0.0, overlap_weight=1.0),
    TRANSITION: RouterSettings(temperature=0.7, overlap_weight=1.0),
    SATURATED: RouterSettings(temperature=0.8, overlap_weight=0.1),
}


def live_profile() -> Profile:
    return profile_from_dict(PROFILE, "control-live")


@dataclass
class LiveStack:
    profile: Profile
    topology: Topology
    stack: DynamoStack
    vocab: Vocabulary

    @classmethod
    def start(cls) -> LiveStack:
        prof, topo = live_profile(), parse_topology(TOPOLOGY)
        python = install.find_python()
        model_dir = install.model_dir(python)
        work = new_work_dir("autotune-control-live-")
        plan = plan_timing(prof, topo, work / "timing", speedup=SPEEDUP)
        stack = DynamoStack(
            prof, topo, python=python, model_dir=model_dir, plan=plan, work_dir=work, ready_timeout_s=120
        )
        stack.start()
        return cls(prof, topo, stack, Vocabulary.from_table(load_words(model_dir)))

    def bodies(self, n: int, seed: int, schedule: ArrivalSchedule | None = None) -> tuple[list[bytes], Any]:
        w = self.profile.workload
        stream = request_stream(w, n, seed, schedule)
        specs = render_stream(stream, w, vocab=self.vocab, api="completions", seed=seed)
        return render_bodies(specs, api="completions", model=self.stack.model_name, vocab=self.vocab), stream.arrival_s

    def closed(self, url: str, concurrency: int, n: int, seed: int) -> BurstResult:
        bodies, _ = self.bodies(n, seed)
        return run_burst(BurstConfig(url, concurrency=concurrency, request_timeout_s=120), bodies)

    def stop(self) -> None:
        self.stack.stop()


def ttft_ms(burst: BurstResult) -> np.ndarray:
    return np.array([(r.first_token_s - r.send_s) * 1000 for r in burst.records if r.status == "ok"])


@dataclass(frozen=True)
class Calibration:
    baseline_ttft_p99_ms: float  # one request at a time
    capacity_rps: float  # closed loop at twice the batch slots
    bucket_edges_s: tuple[float, ...]  # the frontend's TTFT histogram buckets

    def threshold_x(self, multiple: float) -> float:
        """``multiple`` × baseline, raised to the next bucket edge, as a multiple of the baseline.

        The controller knows a P99 only to within its bucket (Dynamo 1.6.1: 0.1, 0.22, 0.47, 1, 2.2 s …), and
        with few requests per interval it reads near the bucket's top; a threshold at an edge is crossed
        exactly when the interval's P99 lands in a higher bucket (docs/controller.md, "Resolution").
        """
        want_s = multiple * self.baseline_ttft_p99_ms / 1000
        edge_s = min((e for e in self.bucket_edges_s if e >= want_s), default=want_s)
        return edge_s * 1000 / self.baseline_ttft_p99_ms

    def settings(self) -> ControllerSettings:
        """θ1 ≥ 3×, θ2 ≥ 8× the baseline, at bucket edges; α 0.3, 1 s updates, 3 s dwell (recommended.yaml's defaults)."""
        t1 = self.threshold_x(3.0)
        t2 = max(self.threshold_x(8.0), t1 * 2)
        return ControllerSettings(
            self.baseline_ttft_p99_ms, t1, t2, ewma_alpha=0.3, interval_s=1.0, dwell_s=3.0, presets=dict(PRESETS)
        )


def calibrate(live: LiveStack, seed: int = 100) -> Calibration:
    url = live.stack.base_url
    live.closed(url, 4, 12, seed)  # warm caches and connections
    base = live.closed(url, 1, 24, seed + 1)
    slots = live.profile.engine.max_num_seqs * len(live.topology.worker_tps())
    full = live.closed(url, 2 * slots, 8 * slots, seed + 2)
    done = [r for r in full.records if r.status == "ok"]
    span = max(r.end_s for r in done) - min(r.send_s for r in done)
    edges = sorted(e for e in parse_buckets(httpx.get(f"{url}/metrics", timeout=5).text) if math.isfinite(e) and e > 0)
    return Calibration(float(np.percentile(ttft_ms(base), 99)), len(done) / span, tuple(edges))


def spike_plan(capacity_rps: float, scale_s: float = 1.0) -> tuple[LoadPlan, tuple[Phase, ...]]:
    """Ramp below the knee, a spike past capacity, a long recovery (autotune.spike's phase notion)."""
    levels = [("ramp-40%", 0.4, 20.0), ("spike-200%", 2.0, 15.0), ("recovery-30%", 0.3, 45.0)]
    phases, t = [], 0.0
    for name, x, dur in levels:
        phases.append(Phase(name, t, t + dur * scale_s, x))
        t += dur * scale_s
    plan = LoadPlan(capacity_rps, "live closed-loop probe", 0.4 * capacity_rps, 1.0, 20.0 * scale_s, tuple(phases), ())
    return plan, tuple(phases)


def schedule_bodies(live: LiveStack, plan: LoadPlan, phases: tuple[Phase, ...], seed: int) -> tuple[list[bytes], Any]:
    """The same request stream (lengths, templates, arrivals) the simulator runs for ``seed``, cut at the end."""
    sched = ArrivalSchedule(tuple(RateSegment(p.start_s, p.load_x * plan.capacity_rps) for p in phases))
    bodies, arrivals = live.bodies(plan.requests(phases), seed, sched)
    keep = int(np.searchsorted(arrivals, phases[-1].end_s))
    return bodies[:keep], arrivals[:keep]


def run_schedule(url: str, bodies: list[bytes], arrivals: Any) -> BurstResult:
    cfg = BurstConfig(url, concurrency=4096, arrivals_s=np.asarray(arrivals), request_timeout_s=300, max_wall_s=900)
    return run_burst(cfg, bodies)


def trickle_until_below(
    ctl: ControllerProcess, url: str, bodies: list[bytes], rate_rps: float, after_wall_s: float, deadline_s: float = 600
) -> tuple[list[str], list[BurstResult]]:
    """Light traffic until the controller records ``below`` after ``after_wall_s`` (event-driven: a slow
    machine drains the spike's backlog later, so no fixed recovery length can be asserted on).

    Returns the regimes recorded after ``after_wall_s`` and the trickle's bursts (their requests count too).
    """
    n = max(4, int(rate_rps * 5))
    bursts: list[BurstResult] = []
    end = time.monotonic() + deadline_s
    while True:
        after = [r["regime"] for r in ctl.rows() if r.get("type") == "interval" and r.get("wall_s", 0) > after_wall_s]
        if (after and after[-1] == BELOW) or time.monotonic() > end:
            return after, bursts
        arrivals = np.arange(n) / rate_rps
        cfg = BurstConfig(url, concurrency=256, arrivals_s=arrivals, request_timeout_s=300, max_wall_s=300)
        bursts.append(run_burst(cfg, [bodies[i % len(bodies)] for i in range(n)]))


def write_settings(path: Path, settings: ControllerSettings) -> Path:
    path.write_text(yaml.safe_dump(settings_document(settings), sort_keys=False))
    return path


@dataclass
class ControllerProcess:
    """``python -m autotune control ...`` on the stack, its record and its stderr."""

    popen: subprocess.Popen[bytes]
    record: Path
    proxy_url: str
    stderr: Path

    @classmethod
    def start(
        cls, live: LiveStack, settings: Path, tmp: Path, *, apply: bool, extra: tuple[str, ...] = ()
    ) -> ControllerProcess:
        port, record, err = free_port(), tmp / "control.jsonl", tmp / "control.stderr"
        argv = [sys.executable, "-m", "autotune", "control", "--settings", str(settings)]
        argv += ["--local-stack", str(live.stack.work_dir), "--proxy-port", str(port), "--record", str(record)]
        argv += ["--apply" if apply else "--advisory", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(err, "wb") as f:
            popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f, env=env, start_new_session=True)
        proc = cls(popen, record, f"http://127.0.0.1:{port}", err)
        deadline = time.monotonic() + 60
        while not any(r.get("type") == "start" for r in read_record(record)):
            if popen.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"controller did not start:\n{err.read_text()[-2000:]}")
            time.sleep(0.2)
        return proc

    def rows(self) -> list[dict[str, Any]]:
        return read_record(self.record)

    def stop(self, timeout_s: float = 120) -> int:
        """SIGTERM, wait for the exit (baseline restored first); returns the exit code."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return int(self.popen.returncode)


def regime_timeline(rows: list[dict[str, Any]], t0_wall: float) -> list[tuple[float, str]]:
    """(seconds since the schedule began, regime) at every regime change the controller recorded."""
    out: list[tuple[float, str]] = []
    for r in rows:
        if r.get("type") == "interval" and "wall_s" in r and (not out or out[-1][1] != r["regime"]):
            out.append((r["wall_s"] - t0_wall, r["regime"]))
    return out


def phase_of(t_s: float, phases: tuple[Phase, ...]) -> str:
    for p in phases:
        if p.start_s <= t_s < p.end_s:
            return p.name
    return "after" if t_s >= phases[-1].end_s else "before"


def nan_to_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
