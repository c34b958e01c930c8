"""KvRouter.choose against hand-worked examples (dynamo.md §2).

logit_w = ω·max((active_prefill_tokens_w + ISL)/bs − credit·overlap_w, 0) + decode_term_w, lowest wins;
decode_term = active_blocks_w + request_blocks − overlap_w (aggregated), active_blocks_w + request_blocks
(decode stage, overlap ignored), 0 (prefill stage).
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from scipy.stats import chisquare

from autotune.records import DecisionLog
from autotune.sim.kvcache import KvCache
from autotune.sim.router import KvRouter, RouterState
from autotune.topology import RouterSettings

BS = 64
REQ = (101, 102, 103, 104)  # block hashes of a 256-token request: 4 blocks


def cache_with(hashes: tuple[int, ...], total: int = 100) -> KvCache:
    """A worker cache holding ``hashes`` as unpinned cached blocks (a warm radix tree)."""
    c = KvCache(total)
    assert c.alloc(len(hashes))
    c.publish(hashes)
    c.release(hashes, 0)
    return c


def router(tau: float = 0.0, omega: float = 1.0, credit: float = 1.0, seed: int = 0, **busy: float) -> KvRouter:
    return KvRouter(RouterSettings(tau, omega, credit), BS, random.Random(seed), **busy)


def state(active_blocks: list[int], active_prefill: list[int] | None = None) -> RouterState:
    st = RouterState(len(active_blocks))
    st.active_blocks = list(active_blocks)
    st.active_prefill_tokens = list(active_prefill or [0] * len(active_blocks))
    return st


def choose(
    r: KvRouter, stage: str, caches: list[KvCache], st: RouterState, isl: int = 256, log: DecisionLog | None = None
) -> tuple[int, int] | None:
    return r.choose(stage, list(range(len(caches))), caches, st, REQ, isl, 0.0, 7, 32, log)


def test_agg_argmin_worked_example() -> None:
    """ISL 256 → 4 request blocks; active blocks [10, 5, 12]; worker 0 holds 2 of the 4 blocks.

    w0: 1·max(256/64 − 2, 0) + (10 + 4 − 2) = 2 + 12 = 14
    w1: 1·(256/64)           + (5 + 4)      = 4 + 9  = 13   ← argmin
    w2: 4 + (12 + 4)                                  = 20
    """
    log = DecisionLog("agg", [0, 1, 2])
    caches = [cache_with(REQ[:2]), KvCache(100), KvCache(100)]
    assert choose(router(), "agg", caches, state([10, 5, 12]), log=log) == (1, 0)
    assert log.logits == [(14.0, 13.0, 20.0)]
    assert log.overlap_blocks == [(2, 0, 0)] and log.chosen == [1]
    assert log.active_blocks == [(10, 5, 12)] and log.input_tokens == [256] and log.output_tokens == [32]


def test_overlap_credit_lowers_logit() -> None:
    """A full 4-block hit on w0: 1·max(4 − 4, 0) + (10 + 4 − 4) = 10 < 13 → w0 wins now."""
    log = DecisionLog("agg", [0, 1, 2])
    caches = [cache_with(REQ), KvCache(100), KvCache(100)]
    assert choose(router(), "agg", caches, state([10, 5, 12]), log=log) == (0, 4)
    assert log.logits[0] == (10.0, 13.0, 20.0)


def test_larger_credit_and_weight() -> None:
    """Prefill stage, ω=2, credit 1.5, active prefill tokens [128, 0]; w0 holds 2 blocks.

    w0: 2·max((128 + 256)/64 − 1.5·2, 0) = 2·(6 − 3) = 6
    w1: 2·(256/64)                       = 8
    """
    log = DecisionLog("prefill", [0, 1])
    caches = [cache_with(REQ[:2]), KvCache(100)]
    assert choose(router(omega=2.0, credit=1.5), "prefill", caches, state([50, 0], [128, 0]), log=log) == (0, 2)
    assert log.logits[0] == (6.0, 8.0)
    # the credit can only cancel prefill cost, never go below zero: credit 10 gives 2·max(6 − 20, 0) = 0
    log2 = DecisionLog("prefill", [0, 1])
    choose(router(omega=2.0, credit=10.0), "prefill", caches, state([0, 0], [128, 0]), log=log2)
    assert log2.logits[0] == (0.0, 8.0)


def test_omega_zero_ignores_cache_in_prefill_stage() -> None:
    """ω=0 forces credit 0: every prefill logit is 0 and the pick falls to the tie-break."""
    log = DecisionLog("prefill", [0, 1])
    caches = [cache_with(REQ), KvCache(100)]
    got = choose(router(omega=0.0), "prefill", caches, state([0, 0], [10_000, 0]), log=log)
    assert log.logits[0] == (0.0, 0.0)
    assert got == (1, 0)  # tie → the smaller radix tree (worker 1 caches nothing)


def test_decode_stage_ignores_overlap() -> None:
    """Decode stage: ω and credit forced to 0, logit = active blocks + 4, overlap reported as 0.

    w0 (holds every block, 9 active): 13;  w1 (cold, 8 active): 12 ← chosen
    """
    log = DecisionLog("decode", [0, 1])
    caches = [cache_with(REQ), KvCache(100)]
    assert choose(router(omega=5.0), "decode", caches, state([9, 8], [1000, 1000]), log=log) == (1, 0)
    assert log.logits[0] == (13.0, 12.0) and log.overlap_blocks[0] == (0, 0)


def test_prefill_stage_has_no_decode_term() -> None:
    """Prefill stage: active blocks do not count. w0 has 500 active blocks but less queued prefill."""
    caches = [KvCache(1000), KvCache(1000)]
    assert choose(router(), "prefill", caches, state([500, 0], [0, 640]))[0] == 0  # 4 vs 14


def test_tie_smallest_radix_tree() -> None:
    """Equal logits: the worker with the smaller radix tree wins whatever the seed."""
    caches = [cache_with((1, 2, 3, 4, 5)), cache_with((7, 8)), cache_with((9, 10, 11))]
    for seed in range(20):
        assert choose(router(seed=seed), "decode", caches, state([3, 3, 3]))[0] == 1


def test_tie_random_among_equal_trees_is_seeded() -> None:
    """Equal logits and equal trees: uniform random among the tied workers, reproducible per seed."""
    caches = [cache_with((1, 2)), cache_with((3, 4)), cache_with((5, 6)), cache_with((7, 8, 9))]
    picks = [choose(router(seed=s), "decode", caches, state([1, 1, 1, 1]))[0] for s in range(300)]
    assert set(picks) == {0, 1, 2}  # worker 3 has a bigger tree: never picked
    assert min(Counter(picks).values()) > 60
    again = [choose(router(seed=s), "decode", caches, state([1, 1, 1, 1]))[0] for s in range(300)]
    assert picks == again
    # a strictly lower logit beats the tie-break
    assert choose(router(), "decode", caches, state([1, 1, 1, 0]))[0] == 3


def test_temperature_sampling_distribution() -> None:
    """τ > 0: p_i ∝ exp(−(logit_i/(max − min))/τ), here logits (10, 12, 15), span 5, τ 0.5.

    p ∝ (e^−4, e^−4.8, e^−6) = (0.01832, 0.00823, 0.00248) / 0.02903 = (0.6310, 0.2835, 0.0854); chi-square over 20,000 seeded draws.
    """
    tau = 0.5
    logits = [10.0, 12.0, 15.0]  # decode stage: active blocks (6, 8, 11) + 4 request blocks
    w = [math.exp(-(x / (max(logits) - min(logits))) / tau) for x in logits]
    expect = [x / sum(w) for x in w]
    assert expect == pytest.approx([0.6310, 0.2835, 0.0854], abs=5e-4)
    r = router(tau=tau, seed=123)
    caches = [KvCache(100) for _ in range(3)]
    st = state([6, 8, 11])
    n = 20_000
    counts = Counter(choose(r, "decode", caches, st)[0] for _ in range(n))
    observed = [counts[i] for i in range(3)]
    _, p = chisquare(observed, [e * n for e in expect])
    assert p > 1e-3, (observed, expect)
    for i in range(3):
        assert observed[i] / n == pytest.approx(expect[i], abs=0.015)


def test_temperature_scale_invariance_and_sharpness() -> None:
    """Normalising by the span makes the distribution depend only on relative logits; a small τ
    concentrates on the argmin, a large τ flattens toward uniform."""
    caches = [KvCache(100) for _ in range(2)]

    def share_of_best(tau: float, blocks: list[int]) -> float:
        r = router(tau=tau, seed=5)
        picks = [choose(r, "decode", caches, state(blocks))[0] for _ in range(4000)]
        return picks.count(0) / len(picks)

    # logits (4, 5) and (4, 104) normalise to the same (0, 1) gap: p0 = 1/(1 + e^−1/τ)
    for tau in (0.3, 1.0):
        p0 = 1 / (1 + math.exp(-1 / tau))
        assert share_of_best(tau, [0, 1]) == pytest.approx(p0, abs=0.03)
        assert share_of_best(tau, [0, 100]) == pytest.approx(p0, abs=0.03)
    assert share_of_best(0.05, [0, 1]) > 0.99
    assert share_of_best(50.0, [0, 1]) == pytest.approx(0.5, abs=0.04)


def test_temperature_all_equal_is_uniform() -> None:
    caches = [KvCache(100) for _ in range(4)]
    r = router(tau=1.0, seed=9)
    counts = Counter(choose(r, "decode", caches, state([2, 2, 2, 2]))[0] for _ in range(4000))
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) > 850


def test_busy_decode_blocks_threshold() -> None:
    """Busy iff active blocks > frac × pool. w0 (60 of 100) is busy at 0.5, so the higher-logit w1 is chosen.

    w0: 4 + (60 + 4) = 68;  w1: (6400 + 256)/64 + (40 + 4) = 104 + 44 = 148
    """
    caches = [KvCache(100), KvCache(100)]
    st = state([60, 40], [0, 6400])
    assert choose(router(), "agg", caches, st) == (0, 0)  # no thresholds: argmin
    assert choose(router(busy_blocks_frac=0.5), "agg", caches, st) == (1, 0)
    log = DecisionLog("agg", [0, 1])
    assert choose(router(busy_blocks_frac=0.3), "agg", caches, st, log=log) is None  # all busy → 503
    assert log.chosen == [-1] and log.logits == [(68.0, 148.0)]


def test_busy_prefill_tokens_threshold() -> None:
    caches = [KvCache(100), KvCache(100)]
    st = state([0, 0], [2000, 500])
    assert choose(router(busy_prefill_tokens=1000), "prefill", caches, st)[0] == 1
    assert choose(router(busy_prefill_tokens=100), "prefill", caches, st) is None
    assert choose(router(busy_prefill_tokens=2000), "prefill", caches, st)[0] == 1  # "over", not "at"


def test_single_candidate() -> None:
    assert choose(router(tau=1.0), "agg", [cache_with(REQ[:1])], state([1000])) == (0, 1)
