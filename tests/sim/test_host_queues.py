"""Per-request serial work as queues (autotune/sim/frontend.py): hand-computed queue cases, then the
simulator saturating where its frontend, a worker's intake or the KV set-up does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from autotune.backends.sim import SimBackend
from autotune.metrics import summarize
from autotune.profile import Profile, _deep_merge, profile_from_dict
from autotune.records import PointRun
from autotune.sim.frontend import ServerPool
from autotune.topology import parse_topology

NO_QUEUES: dict[str, Any] = {
    "dynamo": {"frontend_workers": 0},
    "engine": {"request_cost_ms": 0.0},
    "kv_transfer": {"handoff_cost_ms": 0.0},
}
BASE: dict[str, Any] = {
    "name": "q",
    "cluster": {"nodes": 3, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 5,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 32},
        "concurrency": [64],
        "requests_per_point": 600,
        "warmup_requests": 100,
        "cooldown_requests": 100,
    },
    "measurement": {"adaptive": False},
    **NO_QUEUES,
}


class Recorder:
    """A schedule() that records (time, callback, arg) instead of running an event loop."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Callable[..., None], object]] = []

    def __call__(self, t: float, fn: Callable[..., None], arg: object) -> None:
        self.events.append((t, fn, arg))


def done(t: float, arg: object) -> None:
    return None


def test_one_server_deterministic_service_caps_throughput_at_one_over_service() -> None:
    """M/D/1-like: n jobs at t=0, one server, service s: they end at s, 2s, ..., ns (rate 1/s)."""
    rec = Recorder()
    pool = ServerPool(1, rec)
    ends = [pool.submit(0.0, 0.02, done, i) for i in range(10)]
    assert ends == pytest.approx([0.02 * (i + 1) for i in range(10)])
    assert [t for t, _, _ in rec.events] == pytest.approx(ends)
    assert pool.busy_s == pytest.approx(0.2)
    assert pool.wait_s == pytest.approx(0.02 * sum(range(10)))  # job i waits i services


def test_k_servers_take_k_jobs_at_once() -> None:
    pool = ServerPool(3, Recorder())
    ends = [pool.submit(0.0, 1.0, done, i) for i in range(7)]
    assert ends == pytest.approx([1, 1, 1, 2, 2, 2, 3])


def test_an_idle_server_starts_a_late_job_at_once() -> None:
    pool = ServerPool(1, Recorder())
    assert pool.submit(0.0, 1.0, done, 0) == pytest.approx(1.0)
    assert pool.submit(5.0, 1.0, done, 1) == pytest.approx(6.0)  # no carry-over from the idle gap
    assert pool.wait_s == 0.0


def test_zero_service_is_no_queue() -> None:
    pool = ServerPool(1, Recorder())
    assert [pool.submit(t, 0.0, done, 0) for t in (0.0, 0.0, 0.5)] == [0.0, 0.0, 0.5]
    assert pool.wait_s == 0.0


def test_a_pool_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one server"):
        ServerPool(0, Recorder())


def make(*over: dict[str, Any]) -> Profile:
    data = copy.deepcopy(BASE)
    for o in over:
        data = _deep_merge(data, o)
    return profile_from_dict(data)


def run(profile: Profile, topo: str, concurrency: int = 64, seed: int = 0) -> PointRun:
    return SimBackend("roofline").deploy(profile, parse_topology(topo)).run_point(concurrency, seed=seed)


def frontend(workers: int, request_ms: float, **more: float) -> dict[str, Any]:
    return {"dynamo": {"frontend_workers": workers, "frontend_request_ms": request_ms, **more}}


def test_one_frontend_server_caps_a_fast_cluster_at_one_over_its_service() -> None:
    """Three B200 TP4 workers serve far more than 50 req/s; one frontend server at 20 ms caps them at 50."""
    free = summarize(run(make(), "3A4")).req_s
    capped = summarize(run(make(frontend(1, 20.0)), "3A4")).req_s
    assert free > 150
    assert capped == pytest.approx(50.0, rel=0.03)


def test_capacity_falls_with_the_per_request_cost() -> None:
    rates = [summarize(run(make(frontend(2, ms)), "3A4")).req_s for ms in (5.0, 10.0, 20.0, 40.0)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)), rates
    assert rates[-1] == pytest.approx(2 / 0.040, rel=0.03)  # two servers, 40 ms each


def test_streaming_work_shares_the_frontend_servers() -> None:
    """Per-token streaming competes with the per-request work: 10 ms + 32 tokens x 250 µs = 18 ms a request."""
    rate = summarize(run(make(frontend(1, 10.0, frontend_output_token_us=250.0)), "3A4")).req_s
    assert rate == pytest.approx(1000 / 18.0, rel=0.03)


def test_response_work_after_the_last_token_shares_the_servers() -> None:
    """5 ms before routing + 15 ms after the last token, one server: 20 ms a request, 50 req/s."""
    rate = summarize(run(make(frontend(1, 5.0, frontend_response_ms=15.0)), "3A4")).req_s
    assert rate == pytest.approx(50.0, rel=0.03)


def test_input_tokens_add_to_the_per_request_work() -> None:
    """128 prompt tokens x 78.125 µs = 10 ms on top of 10 ms: 20 ms a request on one server."""
    rate = summarize(run(make(frontend(1, 10.0, frontend_input_token_us=78.125)), "3A4")).req_s
    assert rate == pytest.approx(50.0, rel=0.03)


def test_zero_workers_keep_the_pure_delay_and_ignore_the_costs() -> None:
    """frontend_workers 0 is the pre-queue simulator: the per-request costs have nothing to queue on."""
    a = run(make(), "3A4").requests
    b = run(make(frontend(0, 50.0, frontend_output_token_us=500.0)), "3A4").requests
    assert a.equals(b)


def test_queues_are_deterministic_per_seed() -> None:
    prof = make(frontend(2, 15.0, frontend_output_token_us=100.0), {"engine": {"request_cost_ms": 2.0}})
    a, b = run(prof, "1P4-2D4", seed=3).requests, run(prof, "1P4-2D4", seed=3).requests
    assert a.equals(b)
    assert not a.equals(run(prof, "1P4-2D4", seed=4).requests)


def test_the_prefill_workers_hand_off_caps_disaggregated_serving() -> None:
    """One prefill worker handing off one request at a time, 25 ms each: at most 40 req/s."""
    free = summarize(run(make(), "1P4-2D4")).req_s
    capped = summarize(run(make({"kv_transfer": {"handoff_cost_ms": 25.0}}), "1P4-2D4")).req_s
    assert free > 100
    assert capped == pytest.approx(40.0, rel=0.03)


def test_the_frontends_hand_off_shares_its_servers() -> None:
    """Disaggregated: 5 ms before routing + 20 ms to route the decode leg, one server: 25 ms a request."""
    rate = summarize(run(make(frontend(1, 5.0, frontend_handoff_ms=20.0)), "1P4-2D4")).req_s
    assert rate == pytest.approx(40.0, rel=0.03)
    agg = summarize(run(make(frontend(1, 5.0, frontend_handoff_ms=20.0)), "3A4")).req_s
    assert agg > 150  # aggregated requests have no hand-off


def test_a_workers_intake_caps_it_and_more_workers_share_the_load() -> None:
    """request_cost_ms is per worker: one worker at 20 ms serves <= 50 req/s, three serve up to 150."""
    cost = {"engine": {"request_cost_ms": 20.0}}
    one = summarize(run(make(cost), "1A4")).req_s
    three = summarize(run(make(cost), "3A4")).req_s
    assert one == pytest.approx(50.0, rel=0.03)
    assert three > 2 * one


def test_transfer_setup_slots_queue_the_setups() -> None:
    """One set-up slot of 30 ms per prefill worker: at most 1/30 ms = 33 req/s through it."""
    slots = {"kv_transfer": {"setup_ms": 30.0, "setup_slots": 1}}
    unlimited = summarize(run(make({"kv_transfer": {"setup_ms": 30.0}}), "1P4-2D4")).req_s
    capped = summarize(run(make(slots), "1P4-2D4")).req_s
    assert unlimited > 100
    assert capped == pytest.approx(1000 / 30, rel=0.03)


def test_queued_frontend_keeps_the_unloaded_route_delay() -> None:
    """At concurrency 1 nothing queues: the route delay is frontend_overhead_ms, with or without the pool."""
    over = {"dynamo": {"frontend_overhead_ms": 6.0, "frontend_jitter_ms": 0.0}}
    for prof in (make(over), make(over, frontend(2, 2.0))):
        df = run(prof, "1A4", concurrency=1).requests
        assert ((df["routed_s"] - df["arrival_s"]) * 1000).to_numpy() == pytest.approx(6.0)


def test_the_local_stack_twin_takes_the_host_costs_for_unset_knobs_only() -> None:
    from autotune.host_costs import HOST_COSTS
    from autotune.validate import mocker_equivalent

    bare = profile_from_dict(
        {**{k: v for k, v in BASE.items() if k not in NO_QUEUES}, "dynamo": {"frontend_request_ms": 3.0}}
    )
    assert bare.dynamo.frontend_workers == 0  # a GPU cluster's frontend: no queue unless the profile says
    assert mocker_equivalent(bare).dynamo.frontend_workers == 0  # the default twin: no host queue
    twin = mocker_equivalent(bare, host_costs=True)
    assert twin.dynamo.frontend_request_ms == 3.0  # set by the profile: kept
    assert twin.dynamo.frontend_workers == HOST_COSTS["dynamo"]["frontend_workers"]
    assert twin.dynamo.frontend_output_token_us == HOST_COSTS["dynamo"]["frontend_output_token_us"]
    assert twin.kv_transfer.handoff_cost_ms == HOST_COSTS["kv_transfer"]["handoff_cost_ms"]
    assert mocker_equivalent(make()).kv_transfer.handoff_cost_ms == 0.0  # set in BASE: kept
