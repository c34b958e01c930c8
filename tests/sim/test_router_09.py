"""Dynamo 0.9.0's router semantics, as measured on a real 0.9.0 frontend + mockers (dynamo.md §7).

* decode stage: ω forced to 0, τ still applies, ``assume_kv_reuse`` stays on (a shared prefix block
  counts once in a worker's decode load), decode workers publish no KV events (no tree, random ties);
* prefill stage: ω·(queued + uncached prefill blocks), no decode term; at ω = 0 no overlap index is
  built and every prefill worker ties (uniformly random);
* so with one prefill worker ω moves no decision, and τ acts on decode balance.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autotune.backends.sim import SimBackend
from autotune.profile import Profile, _deep_merge, profile_from_dict
from autotune.records import DecisionLog, PointRun
from autotune.sim.kvcache import KvCache
from autotune.sim.router import KvRouter, RouterRules, RouterState
from autotune.topology import RouterSettings, parse_topology

BS = 64
REQ = (101, 102, 103, 104)  # block hashes of a 256-token request: 4 full blocks
V09 = RouterRules.for_version((0, 9))
V16 = RouterRules.for_version((1, 6))


def cache_with(hashes: tuple[int, ...], total: int = 100) -> KvCache:
    c = KvCache(total)
    assert c.alloc(len(hashes))
    c.publish(hashes)
    c.release(hashes, 0)
    return c


def router(rules: RouterRules, tau: float = 0.0, omega: float = 1.0, seed: int = 0) -> KvRouter:
    return KvRouter(RouterSettings(tau, omega), BS, random.Random(seed), rules=rules)


def choose(
    r: KvRouter, stage: str, caches: list[KvCache], st: RouterState, log: DecisionLog | None = None
) -> tuple[int, int] | None:
    return r.choose(stage, list(range(len(caches))), caches, st, REQ, 256, 0.0, 7, 32, log)


def test_rules_per_version() -> None:
    assert V09 == RouterRules(decode_assumes_kv_reuse=True, index_only_where_used=True)
    assert V16 == RouterRules(decode_assumes_kv_reuse=False, index_only_where_used=False)
    assert RouterRules.for_version((1, 0)) == V16


def test_shared_block_counts_once_in_decode_load() -> None:
    """Two requests of one template (shared blocks 1, 2) on w0: 2 shared + 2·(1 own + 1 partial) = 6, not 8."""
    st = RouterState(1, share_blocks=True)
    st.add_blocks(0, (1, 2, 10), 4)
    st.add_blocks(0, (1, 2, 20), 4)
    assert st.active_blocks == [6]
    assert st.shared_blocks(0, (1, 2, 30)) == 2 and st.shared_blocks(0, (1, 9)) == 1
    st.remove_blocks(0, (1, 2, 10), 4)
    assert st.active_blocks == [4] and st.shared_blocks(0, (1, 2)) == 2
    st.remove_blocks(0, (1, 2, 20), 4)
    assert st.active_blocks == [0] and not st.active_hashes[0]
    plain = RouterState(1)  # 1.x decode: every request's blocks count
    plain.add_blocks(0, (1, 2, 10), 4)
    plain.add_blocks(0, (1, 2, 20), 4)
    assert plain.active_blocks == [8] and plain.shared_blocks(0, (1, 2)) == 0


def test_decode_pull_towards_the_same_template() -> None:
    """w0 runs a request holding REQ[:2] (load 10), w1 runs unrelated ones (load 9); the new request has 4 blocks.

    0.9.0: w0 = 10 + 4 − 2 shared = 12 < w1 = 9 + 4 = 13 → w0.  1.x: 14 vs 13 → w1.
    """
    for rules, want, logits in ((V09, 0, (12.0, 13.0)), (V16, 1, (14.0, 13.0))):
        st = RouterState(2, share_blocks=rules.decode_assumes_kv_reuse)
        st.add_blocks(0, (REQ[0], REQ[1], 555), 10)
        st.add_blocks(1, (777,), 9)
        log = DecisionLog("decode", [0, 1])
        caches = [KvCache(100), KvCache(100)]
        assert choose(router(rules, omega=3.0), "decode", caches, st, log) == (want, 0)
        assert log.logits[0] == logits and log.overlap_blocks[0] == (0, 0)


def test_prefill_at_zero_omega_ties_at_random_without_an_index() -> None:
    """0.9.0 at ω = 0: no overlap index, so the router sees overlap 0 and the tree size breaks no tie:
    both workers win about half the time (1.x gives every tie to the smaller tree). The decision log
    still records what the caches held (PoA-hat prices the uncached prompt)."""
    caches = [cache_with(REQ), KvCache(100)]
    st = RouterState(2)
    st.active_prefill_tokens = [10_000, 0]
    picks = []
    for seed in range(400):
        log = DecisionLog("prefill", [0, 1])
        got = choose(router(V09, omega=0.0, seed=seed), "prefill", caches, st, log)
        assert got is not None and got[1] == 0
        assert log.logits[0] == (0.0, 0.0) and log.overlap_blocks[0] == (len(REQ), 0)
        picks.append(got[0])
    assert 150 < picks.count(0) < 250
    assert {choose(router(V16, omega=0.0, seed=s), "prefill", caches, st)[0] for s in range(50)} == {1}  # type: ignore[index]


def test_prefill_cost_is_queued_plus_uncached_blocks() -> None:
    """0.9.0 at ω = 2: w0 has 2 queued blocks (128 tokens) and 2 of 4 blocks cached: 2·(2 + 4 − 2) = 8;
    w1 has 1 queued block and no cache: 2·(1 + 4) = 10; w0 wins. Active decode blocks play no part."""
    caches = [cache_with(REQ[:2]), KvCache(100)]
    st = RouterState(2)
    st.active_prefill_tokens = [128, 64]
    st.active_blocks = [0, 900]
    log = DecisionLog("prefill", [0, 1])
    assert choose(router(V09, omega=2.0), "prefill", caches, st, log) == (0, 2)
    assert log.logits[0] == (8.0, 10.0) and log.overlap_blocks[0] == (2, 0)


def test_decode_ties_are_random_in_09() -> None:
    """Decode workers publish no KV events in 0.9.0: equal loads tie uniformly whatever the caches hold."""
    caches = [cache_with((1, 2, 3, 4, 5)), KvCache(100)]
    st = RouterState(2, share_blocks=True)
    picks = Counter(choose(router(V09, seed=s), "decode", caches, st)[0] for s in range(400))  # type: ignore[index]
    assert 150 < picks[0] < 250


# ---- end to end: the paper's 1P/5D shape on Dynamo 0.9.0 ---------------------------------------------

BASE: dict[str, Any] = {
    "name": "t09",
    "cluster": {"nodes": 3, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "dynamo": {"version": "0.9.0"},
    "workload": {
        "templates": 5,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 32},
        "concurrency": [16],
        "requests_per_point": 300,
        "warmup_requests": 30,
        "cooldown_requests": 30,
    },
    "measurement": {"adaptive": False},
}


def profile(version: str = "0.9.0") -> Profile:
    return profile_from_dict(_deep_merge(copy.deepcopy(BASE), {"dynamo": {"version": version}}))


def run(p: Profile, topo: str, concurrency: int = 16, seed: int = 0) -> PointRun:
    return SimBackend("roofline").deploy(p, parse_topology(topo)).run_point(concurrency, seed=seed)


def off_argmin_share(log: DecisionLog) -> float:
    """Share of decisions that went to a worker other than the lowest logit."""
    off = [log.logits[i][c] > min(log.logits[i]) for i, c in enumerate(log.chosen) if c >= 0]
    return sum(off) / len(off)


def odd_logit_share(log: DecisionLog) -> float:
    """Share of decode logits that differ from active blocks + request blocks (a shared block discounted)."""
    odd = total = 0
    for i, logits in enumerate(log.logits):
        req = -(-log.input_tokens[i] // BS)
        for lg, ab in zip(logits, log.active_blocks[i], strict=True):
            total += 1
            odd += lg != ab + req
    return odd / total


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_one_prefill_worker_omega_moves_nothing(tau: float) -> None:
    """1P/5D on 0.9.0: every ω gives the same prefill decisions, the same decode decisions and the same run."""
    p = profile()
    runs = [run(p, f"1P4-5D4@tau={tau:g},omega={omega:g}") for omega in (0.0, 1.0, 2.0)]
    first = runs[0]
    assert set(first.decisions["prefill"].chosen) == {0}
    for r in runs[1:]:
        assert r.decisions["prefill"].chosen == first.decisions["prefill"].chosen
        assert r.decisions["decode"].chosen == first.decisions["decode"].chosen
        assert r.decisions["decode"].logits == first.decisions["decode"].logits
        pd.testing.assert_frame_equal(r.requests, first.requests)


def test_decode_temperature_picks_non_cheapest_workers() -> None:
    """τ acts on decode balance: at τ = 1 a measurable share of decode decisions leaves the cheapest worker
    (118 of 200 on the real 0.9.0 frontend), at τ = 0 none does."""
    p = profile()
    cold = run(p, "1P4-5D4@tau=0,omega=1").decisions["decode"]
    hot = run(p, "1P4-5D4@tau=1,omega=1").decisions["decode"]
    assert off_argmin_share(cold) == 0.0
    assert off_argmin_share(hot) > 0.2


def test_decode_load_discounts_shared_prefix_only_on_09() -> None:
    """With 5 templates a decode worker usually runs a request of the new one's template: on 0.9.0 a share of
    decode logits sit below active + request blocks (45-48 % measured on real 0.9.0); 1.6 never."""
    share_09 = odd_logit_share(run(profile("0.9.0"), "1P4-5D4").decisions["decode"])
    share_16 = odd_logit_share(run(profile("1.6.1"), "1P4-5D4").decisions["decode"])
    assert share_09 > 0.1 and share_16 == 0.0


def test_09_run_is_seeded() -> None:
    p = profile()
    a, b = (run(p, "1P4-5D4@tau=1,omega=1", seed=3) for _ in range(2))
    pd.testing.assert_frame_equal(a.requests, b.requests)
    assert np.array_equal(np.asarray(a.decisions["decode"].chosen), np.asarray(b.decisions["decode"].chosen))
