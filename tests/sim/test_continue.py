"""A growing simulated point continues its run: it pauses once its first n requests are done, is
judged on exactly those, and carries on (no drain, nothing re-simulated) on the continuation of the
same request stream. Pausing changes no event, the records of the first n are final at the pause,
and a continued point is reproducible for a seed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autotune.backends.sim import STREAM_PART, SimBackend, SimDeployment
from autotune.profile import Profile, _deep_merge, profile_from_dict
from autotune.records import PointRun
from autotune.runlength import MAX_REQUESTS, TARGETS_MET
from autotune.sim.cluster import ClusterSim
from autotune.topology import parse_topology
from autotune.workload import request_stream

from ..traces.helpers import shared_prefix_trace

BASE: dict[str, Any] = {
    "name": "cont",
    "cluster": {"nodes": 3, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 5,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "uniform", "min": 100, "max": 600},
        "output_tokens": {"dist": "uniform", "min": 8, "max": 80},
        "concurrency": [24],
        "requests_per_point": 200,
        "warmup_requests": 20,
        "cooldown_requests": 20,
    },
}

KINDS: dict[str, dict[str, Any]] = {
    "closed": {},
    "think": {"workload": {"think_time": {"dist": "exponential", "mean_ms": 30}}},
    "open": {"workload": {"arrival": "open", "rate_rps": 40.0}},
}


def make(over: dict[str, Any] | None = None) -> Profile:
    return profile_from_dict(_deep_merge(copy.deepcopy(BASE), over or {}))


def trace_profile(tmp_path: Path, mode: str) -> Profile:
    # 150 requests, looping: a point of 200+ replays it in passes (the stream continues into them)
    path = shared_prefix_trace(tmp_path / "t.jsonl", 150, shared=1, blocks=2, gap_ms=25)
    return make({"workload": {"trace": {"path": str(path), "mode": mode}}})


def profile_of(kind: str, tmp_path: Path) -> Profile:
    return trace_profile(tmp_path, kind.removeprefix("trace-")) if kind.startswith("trace") else make(KINDS[kind])


def deployment(profile: Profile, topo: str = "1P2-2D2") -> SimDeployment:
    return SimBackend().deploy(profile, parse_topology(topo))


def paused(dep: SimDeployment, n: int, *steps: int, seed: int = 0) -> tuple[ClusterSim, list[PointRun]]:
    """A continuable run paused at ``n``, then at each of ``steps``: the run and its result at each pause."""
    sim, open_loop = dep._start(24, seed, n, None, None, continuable=True)
    runs = [dep._result(sim, 24, n, open_loop)]
    for m in steps:
        sim.extend(m)
        runs.append(dep._result(sim, 24, m, open_loop))
    return sim, runs


def same_run(a: PointRun, b: PointRun) -> None:
    pd.testing.assert_frame_equal(a.requests, b.requests)
    for x, y in ((a.itl_ms, b.itl_ms), (a.itl_weight, b.itl_weight), (a.itl_time_s, b.itl_time_s)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert a.window_s == b.window_s and a.meta == b.meta
    assert {s: log.to_frame().equals(b.decisions[s].to_frame()) for s, log in a.decisions.items()} == dict.fromkeys(
        b.decisions, True
    )


KIND_IDS = [*KINDS, "trace-timestamps", "trace-closed_loop"]


@pytest.mark.parametrize("kind", KIND_IDS)
def test_pausing_changes_nothing_and_the_first_requests_are_final(kind: str, tmp_path: Path) -> None:
    dep = deployment(profile_of(kind, tmp_path))
    _, (at_200,) = paused(dep, 200)
    _, (_, _, stepped) = paused(dep, 200, 300, 700)  # 700: past part 0 and into the first continuation
    _, (_, direct) = paused(dep, 200, 700)
    same_run(stepped, direct)  # a pause at 300 changed no event
    # the first 200 requests' records are final at the first pause: extending does not touch them
    pd.testing.assert_frame_equal(
        stepped.requests.head(200).drop(columns="measured"), at_200.requests.drop(columns="measured")
    )


@pytest.mark.parametrize("kind", KIND_IDS)
def test_a_paused_run_reports_exactly_its_requests(kind: str, tmp_path: Path) -> None:
    dep = deployment(profile_of(kind, tmp_path))
    n = 200 + STREAM_PART  # into the second part of the stream
    sim, (_, run) = paused(dep, 200, n)
    df = run.requests
    assert df["request_id"].tolist() == list(range(n))
    assert df["completion_s"].notna().all()  # the first n are all done (or rejected) at the pause
    assert len(sim.seqs) > n  # ... while requests past them were issued and are still running
    past = sim.seqs[n]
    for stage, log in run.decisions.items():
        assert sorted(log.request_id) == list(range(n)), stage
    assert run.itl_time_s is not None and len(run.itl_time_s) and run.itl_time_s.max() <= past.arrival
    warm, cool = dep.profile.workload.measurement_edges(n)
    assert df["measured"].sum() == n - warm - cool
    assert run.meta["sim_end_s"] >= df["completion_s"].max()


def test_the_continuation_is_the_stream_a_longer_draw_of_it_would_be(tmp_path: Path) -> None:
    """A trace continues into its next requests (in passes): the same requests as one longer window."""
    w = trace_profile(tmp_path, "timestamps").workload
    a = request_stream(w, 200, 0)
    joined = a.joined(request_stream(w, 400, 0, part=1, first_index=200))
    whole = request_stream(w, 600, 0)
    for col in ("template", "input_tokens", "output_tokens", "arrival_s"):
        assert np.array_equal(getattr(joined, col), getattr(whole, col)), col
    assert all(joined.block_hashes(i, 64) == whole.block_hashes(i, 64) for i in (0, 149, 150, 599))
    # a synthetic stream: its parts keep their think times and lead tokens
    wt = make(KINDS["think"]).workload
    s = request_stream(wt, 10, 0).joined(request_stream(wt, 5, 0, part=1))
    assert s.think_s is not None and len(s.think_s) == len(s) == 15


@pytest.mark.parametrize("kind", ["closed", "open"])
def test_an_adaptive_point_grows_by_continuing_and_says_so(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prof = make(_deep_merge(KINDS[kind], {"measurement": {"max_requests": 4000}}))
    dep = deployment(prof)
    steps: list[int] = []
    extend = ClusterSim.extend
    monkeypatch.setattr(ClusterSim, "extend", lambda sim, n: (steps.append(n), extend(sim, n))[1])
    a = dep.run_point(24, seed=1, requests=100)
    b = dep.run_point(24, seed=1, requests=100)
    same_run(a, b)  # reproducible for a seed
    assert steps and steps[: len(steps) // 2] == steps[len(steps) // 2 :]
    lengths = [100, *steps[: len(steps) // 2]]
    assert all(1.5 * x <= y <= 4 * x or y == 4000 for x, y in zip(lengths, lengths[1:], strict=False))
    meta = a.meta
    assert meta["requests_run"] == lengths[-1] == len(a.requests)
    assert a.requests["request_id"].tolist() == list(range(lengths[-1]))
    assert meta["stop_reason"] in (TARGETS_MET, MAX_REQUESTS)
    assert meta["converged"] == (meta["stop_reason"] == TARGETS_MET)
    if meta["stop_reason"] == MAX_REQUESTS:
        assert meta["requests_run"] == 4000


def test_a_point_capped_early_stops_at_the_cap() -> None:
    dep = deployment(make({"measurement": {"max_requests": 260, "rel_half_width_tail": 0.001}}))
    run = dep.run_point(24, seed=0, requests=200)
    assert run.meta["stop_reason"] == MAX_REQUESTS and not run.meta["converged"]
    assert run.meta["requests_run"] == len(run.requests) == 260
