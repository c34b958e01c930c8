"""Unit tests of the load generator: prompts, schedules, SSE parsing, aiperf export (no servers)."""

from __future__ import annotations

import json

import numpy as np

from autotune.loadgen.aiperf_export import aiperf_record, write_jsonl
from autotune.loadgen.client import BurstResult, RequestRecord, _parse_events
from autotune.loadgen.prompts import Vocabulary, build_requests, plan_burst, render_body
from autotune.profile import SpikeSpec, WorkloadSpec
from autotune.workload import ArrivalSchedule, RateSegment, draw_lengths, request_stream

VOCAB = Vocabulary(tuple(f"w{i}" for i in range(64)), tuple(range(100, 164)), chat_overhead_tokens=14)


def workload(**kw: object) -> WorkloadSpec:
    base = {
        "templates": 3,
        "prefix_tokens": 32,
        "input_tokens": {"dist": "fixed", "value": 64},
        "output_tokens": {"dist": "fixed", "value": 8},
        "requests_per_point": 50,
        "warmup_requests": 5,
        "cooldown_requests": 5,
    }
    return WorkloadSpec.model_validate({**base, **kw})


def test_completion_prompts_have_exact_lengths_and_shared_template_prefixes() -> None:
    reqs = build_requests(workload(), 40, vocab=VOCAB, api="completions", seed=3)
    assert all(len(r.symbols) == r.input_tokens == 64 for r in reqs)
    by_t: dict[int, list[np.ndarray]] = {}
    for r in reqs:
        by_t.setdefault(r.template, []).append(r.symbols)
    for group in by_t.values():
        assert all(np.array_equal(g[:32], group[0][:32]) for g in group)
    firsts = {t: g[0][:32].tobytes() for t, g in by_t.items()}
    assert len(set(firsts.values())) == len(firsts)  # templates differ
    suffixes = {r.symbols[32:].tobytes() for r in reqs}
    assert len(suffixes) == len(reqs)  # requests differ after the prefix


def test_chat_prompts_leave_room_for_the_template_overhead() -> None:
    reqs = build_requests(workload(), 5, vocab=VOCAB, api="chat", seed=1)
    assert all(len(r.symbols) == 64 - 14 and r.input_tokens == 64 for r in reqs)
    body = json.loads(render_body(reqs[0], api="chat", model="m", vocab=VOCAB))
    assert body["messages"][0]["content"].count(" ") == 50 and body["ignore_eos"] is True
    assert body["max_tokens"] == 8 and body["stream_options"] == {"include_usage": True}


def test_token_id_body_uses_vocabulary_ids() -> None:
    r = build_requests(workload(), 1, vocab=VOCAB, api="completions", seed=0)[0]
    body = json.loads(render_body(r, api="completions", model="m", vocab=VOCAB))
    assert body["prompt"] == [100 + int(s) for s in r.symbols]


def test_same_seed_same_requests_and_profile_seed_keeps_templates() -> None:
    a = build_requests(workload(), 10, vocab=VOCAB, api="completions", seed=5)
    b = build_requests(workload(), 10, vocab=VOCAB, api="completions", seed=5)
    c = build_requests(workload(), 10, vocab=VOCAB, api="completions", seed=6)
    assert all(np.array_equal(x.symbols, y.symbols) for x, y in zip(a, b, strict=True))
    pa = {x.template: x.symbols[:32].tobytes() for x in a}
    pc = {x.template: x.symbols[:32].tobytes() for x in c}
    assert all(pa[t] == pc[t] for t in set(pa) & set(pc))


def test_length_distributions() -> None:
    rng = np.random.default_rng(0)
    u = draw_lengths(workload(input_tokens={"dist": "uniform", "min": 40, "max": 60}).input_tokens, 500, rng)
    assert u.min() >= 40 and u.max() <= 60
    n = draw_lengths(
        workload(input_tokens={"dist": "normal", "mean": 64, "std": 30, "min": 40, "max": 90}).input_tokens, 500, rng
    )
    assert n.min() >= 40 and n.max() <= 90


def test_poisson_spike_has_more_arrivals_during_the_spike() -> None:
    rng = np.random.default_rng(1)
    spike = SpikeSpec(start_s=20, duration_s=10, peak_rate_rps=100)
    t = ArrivalSchedule(
        (
            RateSegment(0, 10.0),
            RateSegment(spike.start_s, spike.peak_rate_rps),
            RateSegment(spike.start_s + spike.duration_s, 10.0),
        )
    ).times(4000, rng)
    assert np.all(np.diff(t) >= 0)
    before = ((t >= 10) & (t < 20)).sum()
    during = ((t >= 20) & (t < 30)).sum()
    assert 60 < before < 140 and 850 < during < 1150


def sse(*events: str) -> bytes:
    return b"".join(f"data: {e}\n\n".encode() for e in events)


def test_sse_parser_times_tokens_and_reads_usage() -> None:
    rec = RequestRecord(0, 0)
    stream = sse(
        '{"id":"cmpl-abc","choices":[{"text":" a","index":0}]}',
        '{"id":"cmpl-abc","choices":[{"text":" b","index":0}]}',
        '{"id":"cmpl-abc","choices":[{"text":"","index":0,"finish_reason":"length"}]}',
        '{"id":"cmpl-abc","choices":[],"usage":{"prompt_tokens":64,"completion_tokens":2,'
        '"prompt_tokens_details":{"cached_tokens":32}}}',
        "[DONE]",
    )
    # Split mid-event: the parser keeps the remainder for the next read.
    rest, done = _parse_events(rec, stream[:70], 1.0)
    rest, done = _parse_events(rec, rest + stream[70:], 1.5)
    assert done and rest == b""
    assert rec.response_id == "abc" and rec.first_token_s in (1.0, 1.5)
    assert len(rec.chunk_times) == 2 and rec.completion_tokens == 2 and rec.cached_tokens == 32


def test_sse_parser_chat_and_error_events() -> None:
    rec = RequestRecord(0, 0)
    _parse_events(
        rec,
        sse(
            '{"id":"chatcmpl-x1","choices":[{"index":0,"delta":{"content":"hi","role":"assistant"}}]}',
            '{"id":"chatcmpl-x1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}',
        ),
        0.1,
    )
    assert rec.response_id == "x1" and len(rec.chunk_times) == 1
    bad = RequestRecord(1, 0)
    _parse_events(bad, sse('{"error":{"message":"worker gone","code":500}}'), 0.2)
    assert bad.status == "error" and "worker gone" in bad.error


def test_itl_is_aiperf_definition() -> None:
    rec = RequestRecord(
        0,
        0,
        send_s=0.0,
        first_token_s=0.1,
        end_s=0.5,
        chunk_times=[0.1, 0.2, 0.4, 0.5],
        completion_tokens=4,
        status="ok",
    )
    mean, mx = rec.itl_ms()
    assert abs(mean - 400 / 3) < 1e-9 and abs(mx - 200) < 1e-9


def test_aiperf_export_names_and_units(tmp_path) -> None:
    ok = RequestRecord(
        0,
        2,
        send_s=0.0,
        first_token_s=0.05,
        end_s=0.25,
        chunk_times=[0.05, 0.15, 0.25],
        response_id="r0",
        prompt_tokens=64,
        completion_tokens=3,
        cached_tokens=0,
        status="ok",
        http_status=200,
    )
    bad = RequestRecord(1, 3, send_s=0.1, end_s=0.11, status="rejected", http_status=503, error="HTTP 503: busy")
    res = BurstResult([ok, bad], t0_wall=1000.0, t0_perf=0.0, duration_s=1.0, cpu_s=0.01)
    a = aiperf_record(ok, res, input_tokens=64, measured=True, worker="0")
    b = aiperf_record(bad, res, input_tokens=64, measured=True)
    m = a["metrics"]
    assert m["time_to_first_token"] == {"value": 50.0, "unit": "ms"}
    assert abs(m["request_latency"]["value"] - 250.0) < 1e-9 and abs(m["inter_token_latency"]["value"] - 100.0) < 1e-9
    assert m["output_sequence_length"]["value"] == 3 and m["input_sequence_length"]["value"] == 64
    assert a["metadata"]["request_start_ns"] == 1000 * 10**9 and a["error"] is None
    assert b["error"]["code"] == 503 and b["metrics"] == {"error_isl": {"value": 64, "unit": "tokens"}}
    path = write_jsonl(tmp_path / "profile_export.jsonl", [a, b])
    assert [json.loads(line)["metadata"]["session_num"] for line in path.read_text().splitlines()] == [0, 1]


def test_live_prompts_render_the_simulators_stream() -> None:
    """validate compares the same workload by construction: templates, lengths and arrivals are one stream."""
    w = workload(
        input_tokens={"dist": "uniform", "min": 40, "max": 90},
        output_tokens={"dist": "uniform", "min": 2, "max": 9},
        arrival="open",
        rate_rps=50.0,
    )
    plan = plan_burst(w, 30, vocab=VOCAB, api="completions", seed=11)
    sim = request_stream(w, 30, 11, ArrivalSchedule.from_workload(w))
    assert [r.template for r in plan.specs] == sim.template.tolist()
    assert [r.input_tokens for r in plan.specs] == sim.input_tokens.tolist()
    assert [r.output_tokens for r in plan.specs] == sim.output_tokens.tolist()
    assert plan.arrivals_s is not None and np.array_equal(plan.arrivals_s, sim.arrival_s)
    assert (plan.warmup, plan.cooldown) == (3, 3)  # the profile's 5/50 share of 30 requests
