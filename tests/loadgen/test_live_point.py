"""The live run-length rule and the stream it extends, without a server: decisions are pure functions of
what the client recorded (``autotune.runlength``, ``autotune.loadgen.live_point``)."""

from __future__ import annotations

import asyncio
import math

import numpy as np

from autotune.loadgen.client import BurstResult, Growth, RequestRecord, _Feed
from autotune.loadgen.live_point import LivePoint, completed_prefix
from autotune.loadgen.prompts import Vocabulary, plan_burst
from autotune.metrics import summarize
from autotune.profile import MeasurementSpec, Profile, WorkloadSpec, profile_from_dict
from autotune.records import PointRun
from autotune.runlength import (
    MAX_REQUESTS,
    TARGETS_MET,
    TIME_BUDGET,
    WALL_BOUND,
    Precision,
    live_extension,
    sim_next_requests,
)
from autotune.workload import ArrivalSchedule, request_stream

VOCAB = Vocabulary(tuple(f"w{i}" for i in range(64)), tuple(range(100, 164)), chat_overhead_tokens=14)
MEAS = MeasurementSpec(max_requests=4000)


def extension(p: Precision, **kw: object):
    args = {"seen": 180, "done": 190, "planned": 200, "elapsed_s": 10.0, "budget_s": 1000.0, "min_step": 20}
    return live_extension(p, meas=MEAS, **{**args, **kw})  # type: ignore[arg-type]


def test_live_extension_stops_when_met_capped_or_out_of_time() -> None:
    assert extension(Precision("ttft_p99_ms", 0.8, True)).stop_reason == TARGETS_MET
    assert extension(Precision("ttft_p99_ms", 3.0, True), planned=4000).stop_reason == MAX_REQUESTS
    # 19 req/s, 10 s left of the budget: the 10 planned still to finish leave room for ~180 more, not 20 x ...
    assert extension(Precision("ttft_p99_ms", 1.5, True), budget_s=20.0).requests == 180
    # ... and with 0.5 s left not even a step fits
    out = extension(Precision("ttft_p99_ms", 1.5, True), budget_s=10.5)
    assert out.requests == 0 and out.stop_reason == TIME_BUDGET
    # nothing complete yet (a check right at the start): no rate to judge the budget by, so one step
    assert extension(Precision("", 0.0, False), seen=0, done=0, planned=20, elapsed_s=0.01, budget_s=1.0).requests == 20


def test_live_extension_aims_like_the_simulator_but_at_most_doubles_per_step() -> None:
    # ratio 1.1: 1.2 * 1.21 * 180 = 261 judged requests wanted, 200 planned: 61 more
    assert extension(Precision("itl_p99_ms", 1.1, True)).requests == 61
    assert extension(Precision("itl_p99_ms", 1.01, True)).requests == 20  # at least one step
    assert extension(Precision("itl_p99_ms", 5.0, True)).requests == 200  # at most what is planned
    assert extension(Precision("", 0.0, False)).requests == 160  # no steady state yet: double what was judged
    assert extension(Precision("itl_p99_ms", math.inf, True)).requests == 160  # no interval at all: double too
    assert extension(Precision("itl_p99_ms", 5.0, True), seen=3900, done=3940, planned=3950).requests == 50  # the cap


def test_sim_rule() -> None:
    meas = MeasurementSpec()
    # a simulated point continues its run, so it grows by x1.5 to x4 a step (aiming at 1.2 x ratio²)
    assert sim_next_requests(Precision("a", 1.1, True), 1000, meas) == 1500
    assert sim_next_requests(Precision("a", 1.25, True), 1000, meas) == 1875
    assert sim_next_requests(Precision("a", 2.0, True), 1000, meas) == 4000
    assert sim_next_requests(Precision("a", math.inf, True), 1000, meas) == 2000  # no interval at all: double
    assert sim_next_requests(Precision("a", 2.0, False), 1000, meas) == 2000
    assert sim_next_requests(Precision("a", 9.0, True), 5000, meas) == meas.max_requests


def workload(**kw: object) -> WorkloadSpec:
    base = {
        "templates": 3,
        "prefix_tokens": 32,
        "input_tokens": {"dist": "uniform", "min": 40, "max": 90},
        "output_tokens": {"dist": "fixed", "value": 8},
        "requests_per_point": 50,
        "warmup_requests": 5,
        "cooldown_requests": 5,
    }
    return WorkloadSpec.model_validate({**base, **kw})


def test_a_continuation_keeps_part_zero_and_continues_the_arrivals() -> None:
    w = workload(arrival="open", rate_rps=40.0)
    sched = ArrivalSchedule.from_workload(w)
    base = request_stream(w, 30, 7, sched)
    assert base.arrival_s is not None
    again = request_stream(w, 30, 7, sched, part=0)
    assert np.array_equal(base.input_tokens, again.input_tokens)  # part 0 is the simulator's stream
    last = float(base.arrival_s[-1])
    more = request_stream(w, 400, 7, sched, part=1, after_s=last)
    assert more.arrival_s is not None and (np.diff(more.arrival_s) > 0).all() and more.arrival_s[0] > last
    assert 30 < 400 / (more.arrival_s[-1] - last) < 55  # the same Poisson rate, 40/s
    assert np.array_equal(more.template, request_stream(w, 400, 7, sched, part=1, after_s=last).template)
    assert not np.array_equal(more.template[:30], base.template)  # its own draws, not a replay


def test_a_continuation_numbers_on_and_shares_the_template_prefixes() -> None:
    w = workload()
    first = plan_burst(w, 20, vocab=VOCAB, api="completions", seed=3, profile_seed=9)
    more = plan_burst(w, 10, vocab=VOCAB, api="completions", seed=3, profile_seed=9, part=1, first_index=20)
    assert [s.index for s in more.specs] == list(range(20, 30))
    prefix = {s.template: s.symbols[:32].tolist() for s in first.specs}
    assert all(s.symbols[:32].tolist() == prefix[s.template] for s in more.specs if s.template in prefix)
    assert (more.warmup, more.cooldown) == (3, 3)  # the profile's share of the 30 requests the point now has


def closed_loop_records(n: int, clients: int, seed: int, ttft_ms: float = 30.0, tokens: int = 8) -> list:
    """What a client would record of a steady closed loop (no server): noisy TTFT and token gaps."""
    rng = np.random.default_rng(seed)
    free = np.sort(rng.uniform(0, 0.05, clients))
    out = []
    for i in range(n):
        c = int(np.argmin(free))
        send = float(free[c])
        first = send + rng.gamma(9.0, ttft_ms / 9.0) / 1e3
        chunks = first + np.concatenate([[0.0], np.cumsum(rng.gamma(16.0, 10.0 / 16.0, tokens - 1) / 1e3)])
        rec = RequestRecord(i, c, send_s=send, first_token_s=first, end_s=float(chunks[-1]))
        rec.chunk_times, rec.completion_tokens, rec.prompt_tokens, rec.cached_tokens = chunks.tolist(), tokens, 64, 32
        rec.status = "ok"
        out.append(rec)
        free[c] = chunks[-1] + 1e-4
    return out


def live_profile(**measurement: object) -> Profile:
    return profile_from_dict(
        {
            "name": "live-unit",
            "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
            "model": "Llama-3.1-8B",
            "workload": {
                "templates": 2,
                "prefix_tokens": 32,
                "input_tokens": {"dist": "fixed", "value": 64},
                "output_tokens": {"dist": "fixed", "value": 8},
                "concurrency": [4],
                "requests_per_point": 60,
                "warmup_requests": 4,
                "cooldown_requests": 4,
            },
            "measurement": measurement,
        },
        "live-unit",
    )


def live_point(n: int, **measurement: object) -> LivePoint:
    return LivePoint(
        live_profile(**measurement), 4, seed=1, requests=n, vocab=VOCAB, api="completions", model="m", gpus=2
    )


def test_judging_a_running_burst_uses_the_completed_prefix_and_timed_itl() -> None:
    recs = closed_loop_records(160, 4, seed=1)
    recs[150].status = "pending"  # in flight: it and everything sent after it wait for the next check
    assert completed_prefix(recs) == 150
    run = live_point(160).judge(recs)
    assert len(run.requests) == 150 and run.itl_time_s is not None and len(run.itl_time_s) == 150 * 7
    m = summarize(run)
    assert m.itl_p99_ms_lo < m.itl_p99_ms < m.itl_p99_ms_hi and m.itl_mean_ms_lo < m.itl_mean_ms < m.itl_mean_ms_hi


def test_grow_continues_a_short_stream_and_stops_a_precise_one() -> None:
    point = live_point(60)
    more = point.grow(closed_loop_records(50, 4, seed=2))
    assert len(more.bodies) >= point.min_step and len(point.specs) == 60 + len(more.bodies)
    assert more.arrivals_s is None and b'"max_tokens":8' in more.bodies[0]  # rendered when sent
    assert point.checks[-1]["more"] == len(more.bodies) and point.stop_reason == ""

    precise = live_point(3000)
    assert precise.grow(closed_loop_records(3000, 4, seed=3)).bodies == ()
    assert precise.stop_reason == TARGETS_MET, precise.checks


def test_grow_stops_at_the_time_budget() -> None:
    point = live_point(60, live_time_budget_s=0.5)  # the 60 planned already take longer
    assert point.grow(closed_loop_records(50, 4, seed=4)).bodies == ()
    assert point.stop_reason == TIME_BUDGET


def test_a_fixed_length_point_never_grows() -> None:
    assert live_point(60, adaptive=False).grow_callback() is None


def test_feed_hands_out_continuations_in_order_and_records_the_wall_bound() -> None:
    asked: list[int] = []

    def grow(records: list[RequestRecord]) -> Growth:
        asked.append(len(records))
        return Growth([b"x%d" % (len(records) + i) for i in range(5)]) if len(asked) == 1 else Growth()

    def grow_open(records: list[RequestRecord]) -> Growth:
        return Growth([b"c0", b"c1"], np.array([0.3, 0.4])) if len(records) == 3 else Growth()

    async def drain(feed: _Feed) -> list[bytes]:
        out = []
        while (i := await feed.take()) is not None:
            out.append(feed.body(i))
            await asyncio.sleep(0)
        return out

    feed = _Feed([b"x0", b"x1", b"x2"], None, grow, lookahead=1, deadline=math.inf)
    assert asyncio.run(drain(feed)) == [b"x%d" % i for i in range(8)]
    assert asked == [3, 8] and len(feed.records) == 8 and feed.final and not feed.wall_bound

    arrivals = [0.0, 0.1, 0.2]  # open loop: a continuation brings its send times; a stop brings none
    grown = _Feed([b"x0", b"x1", b"x2"], np.array(arrivals), grow_open, lookahead=1, deadline=math.inf)
    assert asyncio.run(drain(grown)) == [b"x0", b"x1", b"x2", b"c0", b"c1"]
    assert grown.arrivals == [*arrivals, 0.3, 0.4] and grown.final and grown.error is None

    late = _Feed([b"a", b"b"], None, None, lookahead=0, deadline=0.0)
    assert asyncio.run(drain(late)) == [] and late.wall_bound


def test_finish_records_why_the_point_stopped() -> None:
    point = live_point(60)
    recs = closed_loop_records(60, 4, seed=5)
    burst = BurstResult(recs, 0.0, 0.0, 1.0, 0.1, wall_bound=True)
    run = point.judge(recs)
    point.finish(run, burst)
    assert isinstance(run, PointRun) and run.summary is not None
    assert run.meta["stop_reason"] == WALL_BOUND and run.meta["requests_run"] == 60
    assert {"converged", "limiting_figure", "precision_ratio", "time_budget_s"} <= set(run.meta)
