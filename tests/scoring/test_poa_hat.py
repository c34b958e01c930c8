"""PoA-hat (measured latency over the no-queue Hungarian optimum) on hand-solved cases and sim logs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autotune.perf.mocker import MockerTimer
from autotune.poa import poa_hat, routing_regret
from autotune.records import REQUEST_COLUMNS, DecisionLog

BS = 64
TIMER = MockerTimer()


def _prefill_s(new: int, cached: int = 0) -> float:
    from autotune.perf import prefill_attn_work

    return TIMER.step_s(new, prefill_attn_work(new, cached), 0, 0, 0.0)


def _log(stage: str, workers: int, reqs: list[tuple[int, int, tuple[int, ...], int]]) -> DecisionLog:
    """Decisions (isl, osl, overlap blocks per worker, chosen worker), one per second, request ids 0.."""
    log = DecisionLog(stage, list(range(workers)))
    for i, (isl, osl, overlap, chosen) in enumerate(reqs):
        log.time_s.append(float(i))
        log.request_id.append(i)
        log.chosen.append(chosen)
        log.input_tokens.append(isl)
        log.output_tokens.append(osl)
        log.overlap_blocks.append(overlap)
        log.active_prefill_tokens.append((0,) * workers)
        log.active_blocks.append((0,) * workers)
        log.active_requests.append((0,) * workers)
        log.logits.append((0.0,) * workers)
    return log


def _requests(
    ttft_s: list[float], decode_s: list[float] | None = None, status: list[str] | None = None
) -> pd.DataFrame:
    n = len(ttft_s)
    arrival = np.arange(n, dtype=float)
    first = arrival + np.asarray(ttft_s)
    rows = {c: np.zeros(n) for c in REQUEST_COLUMNS}
    rows.update(
        request_id=np.arange(n),
        arrival_s=arrival,
        first_token_s=first,
        completion_s=first + np.asarray(decode_s if decode_s is not None else [0.0] * n),
        status=status or ["ok"] * n,
    )
    return pd.DataFrame(rows)


# two workers; request 0 is cache-hot on worker 1 (4 of 8 blocks), request 1 on worker 0 (2 blocks)
TWO = [(512, 8, (0, 4), 1), (512, 8, (2, 0), 0)]


def _no_queue(isl: int, blocks: int) -> float:
    return _prefill_s(isl - blocks * BS, blocks * BS)


def test_measured_equal_to_no_queue_optimum_is_exactly_one() -> None:
    # hand-solved: OPT assigns r0 -> w1 (256 new tokens), r1 -> w0 (384 new): what the router did
    log = _log("agg", 2, TWO)
    reqs = _requests([_no_queue(512, 4), _no_queue(512, 2)])
    res = poa_hat({"agg": log}, reqs, [TIMER, TIMER], BS)
    assert res.opt_s == pytest.approx(_no_queue(512, 4) + _no_queue(512, 2))
    assert res.value == pytest.approx(1.0)
    assert res.by_stage == {"agg": pytest.approx(1.0)}


def test_every_ttft_doubled_is_two() -> None:
    log = _log("agg", 2, TWO)
    reqs = _requests([2 * _no_queue(512, 4), 2 * _no_queue(512, 2)])
    assert poa_hat({"agg": log}, reqs, [TIMER, TIMER], BS).value == pytest.approx(2.0)


def test_one_worker_is_mean_ttft_over_mean_bare_prefill() -> None:
    # no choice: each window is one request; OPT = its bare prefill at the decision-time overlap
    shape = [(512, 8, (0,), 0), (256, 8, (2,), 0), (1024, 8, (8,), 0), (128, 8, (0,), 0)]
    ttft = [0.5, 0.25, 2.0, 0.125]
    bare = [_no_queue(512, 0), _no_queue(256, 2), _no_queue(1024, 8), _no_queue(128, 0)]
    log = _log("prefill", 1, shape)
    res = poa_hat({"prefill": log}, _requests(ttft), [TIMER], BS)
    assert res.value == pytest.approx(np.mean(ttft) / np.mean(bare))
    assert res.windows == 4
    assert res.window_median == pytest.approx(float(np.median(np.array(ttft) / np.array(bare))))
    # the same matrix on both sides with one candidate: the routing regret has nothing to regret
    assert routing_regret({"prefill": log}, [TIMER], BS).value == pytest.approx(1.0)


def test_decode_stage_reported_beside_the_ttft_headline() -> None:
    # disaggregated: one prefill worker, two decode workers; decode measured at twice its no-queue time
    prefill = _log("prefill", 1, [(512, 9, (0,), 0), (512, 9, (0,), 0)])
    decode = _log("decode", 2, [(512, 9, (0, 0), 0), (512, 9, (0, 0), 1)])
    step = TIMER.step_s(0, 0.0, 1, 512 + 4, 0.0)
    reqs = _requests([3 * _no_queue(512, 0)] * 2, decode_s=[2 * 8 * step] * 2)
    res = poa_hat({"prefill": prefill, "decode": decode}, reqs, [TIMER] * 3, BS)
    assert res.value == pytest.approx(3.0)  # the TTFT stage only
    assert res.by_stage["prefill"] == pytest.approx(3.0)
    assert res.by_stage["decode"] == pytest.approx(2.0)


def test_unfinished_requests_are_left_out_of_both_sides() -> None:
    log = _log("prefill", 1, [(512, 8, (0,), 0), (256, 8, (0,), 0)])
    reqs = _requests([4 * _no_queue(512, 0), math.nan], status=["ok", "error"])
    res = poa_hat({"prefill": log}, reqs, [TIMER], BS)
    assert res.value == pytest.approx(4.0)
    assert res.windows == 1


def test_speedup_scales_the_frozen_costs_like_the_engine() -> None:
    # a mocker at speed-up 0.5 takes twice as long per step: measured 2x the model's time is no delay
    log = _log("agg", 2, TWO)
    reqs = _requests([2 * _no_queue(512, 4), 2 * _no_queue(512, 2)])
    assert poa_hat({"agg": log}, reqs, [TIMER, TIMER], BS, speedup=0.5).value == pytest.approx(1.0)


def test_sim_single_prefill_worker_regret_one_poa_above_one(paper_profile) -> None:
    """1P/2D: no prefill choice, the decode router balances load: the regret is 1, PoA-hat is not."""
    from autotune.backends.sim import SimBackend
    from autotune.scoring import score_point, step_timers
    from autotune.topology import parse_topology

    topo = parse_topology("1P4-2D4")
    dep = SimBackend().deploy(paper_profile, topo)
    run = dep.run_point(16, seed=3, requests=400)
    sc = score_point(run, step_timers(dep.perf, topo), paper_profile.engine.block_size)
    assert sc.regret_by_stage["prefill"] == pytest.approx(1.0)
    assert sc.poa_hat > 1.5  # TTFT holds KV transfer and a decode step that bare prefill does not
    assert sc.poa_hat == sc.poa_by_stage["prefill"]
    assert sc.poa_hat_lo <= sc.poa_hat <= sc.poa_hat_hi
    assert sc.routing_regret_lo <= sc.routing_regret <= sc.routing_regret_hi
    assert sc.poa_window_p90 >= sc.poa_window_median
