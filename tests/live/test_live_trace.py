"""A tiny Mooncake trace replayed on a real Dynamo 1.6.1 stack (dynamo-local, mockers): the burst sends
each request at its scaled trace time with the trace's lengths, and the shared hash-id blocks really
share their tokens (the server's prefix cache serves them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autotune.backends.dynamo_local import DynamoLocalBackend
from autotune.metrics import summarize
from autotune.topology import parse_topology
from autotune.traces.trace import load_trace

from .conftest import make_small_profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_trace_replays_times_lengths_and_prefix_sharing(tmp_path) -> None:
    recs = []
    next_id = 100
    for i in range(40):
        group = i % 2  # two prefix groups of 4 shared 32-token blocks (128 tokens), then 2 blocks of its own
        recs.append(
            {
                "timestamp": 150 * i,
                "input_length": 192,
                "output_length": 8,
                "hash_ids": [10 * group + j for j in range(4)] + [next_id, next_id + 1],
            }
        )
        next_id += 2
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    trace = {"path": str(path), "block_size_tokens": 32, "rate_scale": 1.5}
    prof = make_small_profile(trace=trace, requests_per_point=40, warmup_requests=4, cooldown_requests=4)
    assert prof.workload.trace is not None
    with DynamoLocalBackend().deploy(prof, parse_topology("1A4"), trial_id="live-trace") as dep:
        run = dep.run_point(8, seed=0)
    df = run.requests
    assert (df["status"] == "ok").all() and len(df) == 40
    assert (df["input_tokens"] == 192).all() and (df["output_tokens"] == 8).all()
    planned = 0.1 * np.arange(40)  # 150 ms gaps at 1.5x, from the burst's start
    assert (df["arrival_s"].to_numpy() >= planned - 1e-3).all()  # open loop: never before its trace time
    m = summarize(run)
    # one worker, 64-token cache blocks: each request after its group's first finds 128 of 192 tokens
    assert m.prefix_hit_rate == pytest.approx(load_trace(prof.workload.trace).reuse_rate(), abs=0.08)
    assert run.meta["trace_requests"] == 40 and run.meta["trace_passes"] == 1
