"""The simulator honours a deployment's own figures: tokenisation cost per prompt token, the KV-transfer
bandwidth and bytes per token, client think time and the chat template's shared leading tokens."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from autotune.backends.sim import SimBackend
from autotune.feasibility import check_feasibility
from autotune.perf import get_perf_model
from autotune.profile import Profile, _deep_merge, profile_from_dict
from autotune.profile_schema import DynamoSpec
from autotune.records import PointRun
from autotune.sim.cluster import ClusterSim
from autotune.sim.frontend import Frontend
from autotune.sim.seq import Seq
from autotune.topology import parse_topology
from autotune.workload import request_stream

BASE: dict[str, Any] = {
    "name": "own",
    "cluster": {"nodes": 2, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 3,
        "prefix_tokens": 128,
        "input_tokens": {"dist": "fixed", "value": 512},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [1, 4],
        "requests_per_point": 120,
        "warmup_requests": 10,
        "cooldown_requests": 10,
    },
    "measurement": {"adaptive": False},
}


def make(**over: dict[str, Any]) -> Profile:
    return profile_from_dict(_deep_merge(copy.deepcopy(BASE), over))


def run(profile: Profile, topo: str, concurrency: int) -> PointRun:
    return SimBackend("roofline").deploy(profile, parse_topology(topo)).run_point(concurrency, seed=3)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, object]] = []

    def __call__(self, t: float, fn: object, arg: object) -> None:
        self.events.append((t, arg))


def seq(isl: int) -> Seq:
    return Seq(0, isl, 8, (), 0, 0.0, 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_tokenisation_cost_per_prompt_token_adds_to_the_route_delay(workers: int) -> None:
    """Without a queue: a pure delay on top of the overhead; with one: queued work on top of the overhead."""
    dyn = DynamoSpec(frontend_jitter_ms=0.0, frontend_workers=workers, frontend_tokenize_token_us=10.0)
    rec = Recorder()
    fe = Frontend(dyn, rec, seed=0)
    fe.admit(0.0, seq(3000), lambda t, s: None)
    t, arg = rec.events[0]
    if workers:  # the delay part, then the queued service (tokenisation included)
        assert t == pytest.approx(0.0045)
        assert fe.pool is not None
        fe._queue_request(t, arg)  # type: ignore[arg-type]
        assert rec.events[-1][0] == pytest.approx(0.0045 + 3000 * 10e-6)
    else:
        assert t == pytest.approx(0.0045 + 3000 * 10e-6)


def test_long_prompts_pay_the_tokenisation_cost_in_ttft() -> None:
    plain = run(make(), "2A4", 1)
    tokenised = run(make(dynamo={"frontend_tokenize_token_us": 20.0}), "2A4", 1)
    gap_ms = (tokenised.requests["first_token_s"] - tokenised.requests["arrival_s"]).median() * 1e3 - (
        plain.requests["first_token_s"] - plain.requests["arrival_s"]
    ).median() * 1e3
    assert gap_ms == pytest.approx(512 * 20e-3, rel=0.2)  # 10.2 ms for a 512-token prompt


def _cluster(profile: Profile, topo: str) -> ClusterSim:
    t = parse_topology(topo)
    return ClusterSim(profile, t, get_perf_model("roofline", profile), check_feasibility(t, profile), seed=0)


def test_given_kv_transfer_bandwidth_and_bytes_per_token_set_the_transfer_time() -> None:
    sim = _cluster(make(kv_transfer={"bandwidth_gb_s": 10.0, "bytes_per_token": 1e5}), "1P4-1D4")
    s = seq(2000)
    s.pworker, s.dworker = 0, 1
    assert sim._moving_s(s) == pytest.approx(2000 * 1e5 / 10e9)  # the whole request's bytes at the given rate
    derived = _cluster(make(), "1P4-1D4")
    p = make()
    per_rank = 2000 * p.model.kv_bytes_per_token / 4 / (p.cluster.intra_bw_gb_s * 1e9 * p.kv_transfer.efficiency)
    assert derived._moving_s(s) == pytest.approx(per_rank)  # unset: the old figure, ranks in parallel


def test_closed_loop_clients_think_between_requests() -> None:
    think = make(workload={"think_time": {"dist": "fixed", "value_ms": 100}})
    df = run(think, "2A4", 1).requests.sort_values("arrival_s")
    gaps = df["arrival_s"].to_numpy()[1:] - df["completion_s"].to_numpy()[:-1]
    assert gaps == pytest.approx(np.full(len(gaps), 0.1))
    back_to_back = run(make(), "2A4", 1).requests.sort_values("arrival_s")
    assert back_to_back["arrival_s"].to_numpy()[1:] == pytest.approx(back_to_back["completion_s"].to_numpy()[:-1])


def test_think_times_leave_the_rest_of_the_stream_unchanged_and_are_seeded() -> None:
    w = make().workload
    wt = make(workload={"think_time": {"dist": "exponential", "mean_ms": 50}}).workload
    a, b, c = request_stream(w, 200, 7), request_stream(wt, 200, 7), request_stream(wt, 200, 7)
    assert a.think_s is None and b.think_s is not None and c.think_s is not None
    for col in ("template", "input_tokens", "output_tokens"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert np.array_equal(b.think_s, c.think_s) and b.think_s.mean() == pytest.approx(0.05, rel=0.25)
    uniform = make(workload={"think_time": {"dist": "uniform", "min_ms": 10, "max_ms": 20}}).workload
    u = request_stream(uniform, 200, 7).think_s
    assert u is not None and 0.01 <= u.min() and u.max() <= 0.02


def test_leading_chat_template_tokens_are_shared_by_every_template() -> None:
    w = make(workload={"chat_template_tokens_before": 128, "chat_template_tokens_after": 8}).workload
    s = request_stream(w, 60, 1)
    by_template = {int(s.template[i]): s.block_hashes(i, 64) for i in range(60)}
    assert len(by_template) == 3
    heads = {h[:2] for h in by_template.values()}  # 128 leading tokens: two blocks common to all
    assert len(heads) == 1
    prefixes = {h[2:4] for h in by_template.values()}  # then each template's 128-token prefix
    assert len(prefixes) == 3
    one = [s.block_hashes(i, 64) for i in range(60) if s.template[i] == s.template[0]]
    assert all(h[:4] == one[0][:4] and h[4:] != one[0][4:] for h in one[1:])
    plain = request_stream(make().workload, 60, 1)
    assert plain.block_hashes(0, 64)[:2] == tuple(int(plain.template[0] + 1) * 1_000_003 + i for i in range(2))


def test_leading_template_tokens_raise_the_hit_rate_across_templates() -> None:
    without = run(make(workload={"templates": 12}), "4A4", 4)
    shared = run(make(workload={"templates": 12, "chat_template_tokens_before": 256}), "4A4", 4)
    assert shared.requests["cached_tokens"].sum() > without.requests["cached_tokens"].sum()
