"""Replaying a trace: rate scaling, slicing, the loop rule, determinism, and the prefix sharing the
simulator's cache and the live prompts see."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.backends.sim import SimBackend
from autotune.loadgen.prompts import Vocabulary, plan_burst
from autotune.metrics import summarize
from autotune.topology import parse_topology
from autotune.workload import request_stream

from .helpers import shared_prefix_trace, trace_profile, write_jsonl

VOCAB = Vocabulary(tuple(f"w{i}" for i in range(64)), tuple(range(1000, 1064)), chat_overhead_tokens=5)


def _gaps_trace(tmp_path, n: int = 10) -> str:
    recs = [{"timestamp": 1000 + 200 * i, "input_length": 64, "output_length": 4, "hash_ids": [0]} for i in range(n)]
    return str(write_jsonl(tmp_path / "g.jsonl", recs))


def test_rate_scale_and_slice(tmp_path) -> None:
    path = _gaps_trace(tmp_path)
    w = trace_profile({"path": path, "rate_scale": 2.0}).workload
    s = request_stream(w, 10, seed=0)
    assert s.arrival_s is not None and np.allclose(s.arrival_s, 0.1 * np.arange(10))  # 200 ms gaps / 2
    w = trace_profile({"path": path, "start_s": 0.3, "end_s": 1.0}).workload
    s = request_stream(w, 4, seed=0)
    # requests at 0.4, 0.6, 0.8 s after the first one are in [0.3, 1.0); times count from start_s
    assert s.arrival_s is not None and np.allclose(s.arrival_s, [0.1, 0.3, 0.5, 0.8])  # then pass 2 (+0.7 s)


def test_running_out_loops_with_fresh_private_blocks(tmp_path) -> None:
    path = shared_prefix_trace(tmp_path / "s.jsonl", 4, shared=1, blocks=2)
    w = trace_profile({"path": str(path)}).workload
    s = request_stream(w, 8, seed=0)
    assert s.arrival_s is not None
    period = 0.4  # last request at 0.3 s plus one mean gap
    assert np.allclose(s.arrival_s[4:], s.arrival_s[:4] + period)
    assert s.input_tokens.tolist() == s.input_tokens[:4].tolist() * 2
    first, again = s.block_hashes(0, 64), s.block_hashes(4, 64)
    assert first[:8] == again[:8]  # the shared 512-token block: 8 cache blocks of 64, same in every pass
    assert not set(first[8:]) & set(again[8:])  # the request's own block is fresh in the next pass


def test_closed_loop_mode_has_no_arrival_times(tmp_path) -> None:
    w = trace_profile({"path": _gaps_trace(tmp_path), "mode": "closed_loop"}).workload
    assert not w.open_loop and request_stream(w, 5, seed=0).arrival_s is None


def test_replay_is_deterministic_for_a_seed(tmp_path) -> None:
    path = shared_prefix_trace(tmp_path / "s.jsonl", 120, shared=2, blocks=3, gap_ms=20)
    prof = trace_profile({"path": str(path), "mode": "closed_loop"}, requests_per_point=120)
    dep = SimBackend().deploy(prof, parse_topology("2A4"))
    a, b = dep.run_point(8, seed=3), dep.run_point(8, seed=3)
    assert a.requests.equals(b.requests)
    assert a.meta["trace_requests"] == 120 and a.meta["trace_passes"] == 1


@pytest.mark.parametrize(("shared", "blocks"), [(2, 4), (3, 4)])
def test_shared_blocks_give_their_hit_rate_in_the_simulator(tmp_path, shared, blocks) -> None:
    """Every request shares its first ``shared`` of ``blocks`` blocks: after the first request warms the
    cache, the prefix-hit rate is shared / blocks (a single worker: no router choice involved)."""
    path = shared_prefix_trace(tmp_path / "s.jsonl", 200, shared=shared, blocks=blocks, gap_ms=50)
    prof = trace_profile({"path": str(path)}, requests_per_point=200, warmup_requests=20, cooldown_requests=20)
    run = SimBackend().deploy(prof, parse_topology("1A4")).run_point(1, seed=0)
    m = summarize(run)
    assert m.prefix_hit_rate == pytest.approx(shared / blocks, abs=0.01)


def test_live_prompts_share_exactly_the_shared_blocks(tmp_path) -> None:
    recs = [
        {"timestamp": 0, "input_length": 40, "output_length": 3, "hash_ids": [7, 8, 9]},
        {"timestamp": 10, "input_length": 36, "output_length": 3, "hash_ids": [7, 8, 5]},
        {"timestamp": 20, "input_length": 40, "output_length": 3, "hash_ids": [6, 8, 9]},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", recs)
    prof = trace_profile(
        {"path": str(path), "block_size_tokens": 16}, requests_per_point=3, warmup_requests=0, cooldown_requests=0
    )
    plan = plan_burst(prof.workload, 3, vocab=VOCAB, api="completions", seed=1, profile_seed=0)
    a, b, c = (s.symbols for s in plan.specs)
    assert [len(x) for x in (a, b, c)] == [40, 36, 40]
    assert (a[:32] == b[:32]).all() and not (a[32:36] == b[32:36]).all()  # blocks 7, 8 shared; 9 vs 5
    assert not (a[:16] == c[:16]).all()  # 6 vs 7 at the start: nothing shared, even the equal later ids
    assert plan.arrivals_s is not None and np.allclose(plan.arrivals_s, [0, 0.01, 0.02])
    again = plan_burst(prof.workload, 3, vocab=VOCAB, api="completions", seed=1, profile_seed=0)
    assert all((x.symbols == y.symbols).all() for x, y in zip(plan.specs, again.specs, strict=True))
    chat = plan_burst(prof.workload, 3, vocab=VOCAB, api="chat", seed=1, profile_seed=0)
    assert [s.input_tokens for s in chat.specs] == [40, 36, 40] and len(chat.specs[0].symbols) == 35
    # a live point that runs longer continues where it stopped: request 3 is pass 2 of request 0
    more = plan_burst(prof.workload, 1, vocab=VOCAB, api="completions", seed=1, part=1, first_index=3, after_s=0.02)
    assert (more.specs[0].symbols[:32] == a[:32]).all() and more.specs[0].index == 3
    assert more.arrivals_s is not None and more.arrivals_s[0] == pytest.approx(0.03)
