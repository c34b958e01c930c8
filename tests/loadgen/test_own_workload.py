"""The live load burst carries the workload's chat-template token positions and the clients' think time."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import autotune.loadgen.client as client_mod
from autotune.loadgen.client import BurstConfig, RequestRecord, run_burst
from autotune.loadgen.prompts import Vocabulary, build_requests, plan_burst
from autotune.profile import WorkloadSpec
from autotune.workload import request_stream

VOCAB = Vocabulary(tuple(f"w{i}" for i in range(64)), tuple(range(100, 164)), chat_overhead_tokens=14)


def workload(**kw: object) -> WorkloadSpec:
    base: dict[str, Any] = {
        "templates": 3,
        "prefix_tokens": 16,
        "input_tokens": {"dist": "fixed", "value": 64},
        "output_tokens": {"dist": "fixed", "value": 8},
        "chat_template_tokens_before": 10,
        "chat_template_tokens_after": 4,
        "requests_per_point": 50,
        "warmup_requests": 5,
        "cooldown_requests": 5,
    }
    return WorkloadSpec.model_validate({**base, **kw})


def test_chat_template_tokens_lead_every_prompt_and_close_it() -> None:
    reqs = build_requests(workload(), 30, vocab=VOCAB, api="completions", seed=2)
    assert all(len(r.symbols) == r.input_tokens == 64 for r in reqs)
    lead = reqs[0].symbols[:10]
    tail = reqs[0].symbols[-4:]
    assert all(np.array_equal(r.symbols[:10], lead) and np.array_equal(r.symbols[-4:], tail) for r in reqs)
    by_t = {}
    for r in reqs:
        by_t.setdefault(r.template, r.symbols[10:26])
        assert np.array_equal(r.symbols[10:26], by_t[r.template])  # then the template's shared prefix
    assert len({v.tobytes() for v in by_t.values()}) == len(by_t)
    assert len({r.symbols[26:-4].tobytes() for r in reqs}) == len(reqs)  # each request's own text


def test_chat_mode_keeps_the_servers_template_overhead_and_the_declared_tokens() -> None:
    reqs = build_requests(workload(), 5, vocab=VOCAB, api="chat", seed=2)
    assert all(len(r.symbols) == 64 - 14 and r.input_tokens == 64 for r in reqs)


def test_plan_carries_the_streams_think_times() -> None:
    w = workload(think_time={"dist": "exponential", "mean_ms": 20})
    plan = plan_burst(w, 20, vocab=VOCAB, api="completions", seed=4)
    think = request_stream(w, 20, 4).think_s
    assert think is not None and [r.think_s for r in plan.specs] == think.tolist()
    assert all(r.think_s == 0.0 for r in plan_burst(workload(), 5, vocab=VOCAB, api="completions", seed=4).specs)


def test_closed_loop_client_pauses_for_its_think_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for the HTTP exchange (10 ms a request): one client's next send waits the think time."""

    async def exchange(client: Any, cfg: BurstConfig, body: bytes, rec: RequestRecord, t0: float) -> None:
        rec.send_s = client_mod.time.perf_counter() - t0
        await asyncio.sleep(0.01)
        rec.end_s, rec.status = client_mod.time.perf_counter() - t0, "ok"

    monkeypatch.setattr(client_mod, "_one", exchange)
    think = [0.05, 0.0, 0.1, 0.0]
    cfg = BurstConfig("http://127.0.0.1:9", concurrency=1, think_s=lambda i: think[i])
    recs = run_burst(cfg, [b"{}"] * 4).records
    gaps = [recs[i + 1].send_s - recs[i].end_s for i in range(3)]
    assert gaps[0] >= 0.05 and gaps[2] >= 0.1  # asyncio.sleep never wakes early
    assert all(r.status == "ok" for r in recs)


def test_live_point_hands_the_clients_their_think_times() -> None:
    from autotune.loadgen.live_point import LivePoint
    from autotune.profile import profile_from_dict

    data: dict[str, Any] = {
        "name": "t",
        "cluster": {"nodes": 1, "gpu": "B200", "gpus_per_node": 8},
        "model": "Llama-3.1-8B",
        "workload": {**workload(concurrency=[4]).model_dump(), "think_time": {"dist": "fixed", "value_ms": 30}},
    }
    point = LivePoint(
        profile_from_dict(data), 4, seed=1, requests=50, vocab=VOCAB, api="completions", model="m", gpus=1
    )
    think = point.think_time()
    assert think is not None and [think(i) for i in range(50)] == [0.03] * 50
    del data["workload"]["think_time"]
    plain = LivePoint(
        profile_from_dict(data), 4, seed=1, requests=50, vocab=VOCAB, api="completions", model="m", gpus=1
    )
    assert plain.think_time() is None
