"""The dynamo-local backend against a real Dynamo 1.6.1 stack (no mocks): bursts, routing, failure."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autotune.backends.dynamo_local import DynamoLocalBackend
from autotune.dynamo.process import group_alive
from autotune.errors import BackendError
from autotune.metrics import summarize
from autotune.perf import get_perf_model
from autotune.scoring import score_point, step_timers
from autotune.topology import parse_topology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def assert_gone(pids: list[int], work_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while any(group_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if group_alive(p)], "processes left running"
    assert not work_dir.exists(), "temp dir left behind"


def test_aggregated_burst_measures_and_attributes_every_request(small_profile) -> None:
    prof = small_profile()
    dep = DynamoLocalBackend().deploy(prof, parse_topology("2A4"), trial_id="live-agg")
    pids, work = dep.stack.procs.pids(), dep.work_dir
    with dep:
        run = dep.run_point(8, seed=1)
    assert_gone(pids, work)
    df = run.requests
    assert (df["status"] == "ok").all() and len(df) == 80 and df["measured"].sum() == 64
    assert (df["output_tokens"] == 16).all() and (df["input_tokens"] == 128).all()
    assert set(df["decode_worker"]) == {0, 1} and (df["prefill_worker"] == df["decode_worker"]).all()
    assert (df["first_token_s"] > df["arrival_s"]).all() and (df["completion_s"] >= df["first_token_s"]).all()
    m = summarize(run)
    steady = df["arrival_s"].between(m.steady_start_s, m.steady_end_s)
    assert m.requests == int(steady.sum()) >= 32  # every steady-state arrival is measured
    assert m.req_s > 1 and 0 < m.ttft_p50_ms < 1000 and 1 < m.itl_mean_ms < 200
    assert m.prefix_hit_rate > 0.2  # 64 of 128 tokens are a template prefix
    assert run.meta["timing"] == "npz:roofline" and run.meta["dynamo_version"] == "1.6.1"
    assert run.meta["frontend_metrics"]["requests_total"] == 80
    dl = run.decisions["agg"]
    assert len(dl) == 80 and dl.workers == [0, 1]
    assert run.meta["replay"]["overlap_agreement"] > 0.9 and run.meta["replay"]["argmin_agreement"] > 0.8
    assert len(run.itl_ms) == len(run.itl_time_s) == 80 * 15  # every request's gaps, timed, as the simulator's
    assert run.meta["stop_reason"] == "fixed_length" and run.meta["requests_run"] == 80


def test_disaggregated_burst_routes_through_prefill_and_both_decoders(small_profile, tmp_path) -> None:
    prof = small_profile()
    backend = DynamoLocalBackend(export_aiperf=str(tmp_path))
    with backend.deploy(prof, parse_topology("1P4-2D4"), trial_id="live-disagg") as dep:
        run = dep.run_point(8, seed=2)
    lines = Path(run.meta["aiperf_export"]).read_text().splitlines()
    assert len(lines) == 80 and '"time_to_first_token"' in lines[-1]
    df = run.requests
    assert (df["status"] == "ok").all()
    assert (df["prefill_worker"] == 0).all() and set(df["decode_worker"]) == {1, 2}
    assert (df["prefill_end_s"] <= df["kv_transfer_end_s"] + 1e-3).all()
    assert set(run.decisions) == {"prefill", "decode"}
    assert len(run.decisions["prefill"]) == len(run.decisions["decode"]) == 80
    m = summarize(run)
    assert m.requests == int(df["arrival_s"].between(m.steady_start_s, m.steady_end_s).sum()) >= 32
    # both PoA estimators on live data (docs/live-poa.md): one prefill worker leaves no prefill choice
    # to regret, while measured TTFT (frontend, transfer, first step) stays above the bare prefill
    sc = score_point(
        run, step_timers(get_perf_model("roofline", prof), parse_topology("1P4-2D4")), prof.engine.block_size
    )
    assert sc.regret_by_stage["prefill"] == pytest.approx(1.0)
    assert sc.poa_hat > 1 and sc.poa_hat == sc.poa_by_stage["prefill"] and "decode" in sc.poa_by_stage
    assert sc.poa_hat_lo <= sc.poa_hat <= sc.poa_hat_hi


def test_adaptive_point_continues_its_stream_and_reports_intervals_and_why_it_stopped(small_profile) -> None:
    # 40 requests cannot meet the targets; the burst continues the same stream (no restart) until they
    # are met or the budget says stop. Variable lengths, so figures are not atoms of a fixed schedule.
    prof = small_profile(
        measurement={"live_time_budget_s": 40.0},
        input_tokens={"dist": "uniform", "min": 96, "max": 160},
        output_tokens={"dist": "uniform", "min": 8, "max": 24},
        requests_per_point=40,
        warmup_requests=0,
        cooldown_requests=0,
    )
    with DynamoLocalBackend().deploy(prof, parse_topology("2A4"), trial_id="live-adaptive") as dep:
        run = dep.run_point(8, seed=7)
    df, meta, m = run.requests, run.meta, run.summary
    print({k: meta[k] for k in ("requests_run", "stop_reason", "converged", "limiting_figure", "precision_ratio")})
    print(meta["run_length_checks"], "stalled", meta["client_stalled_s"], "burst", meta["burst_s"])
    print(
        f"TTFT P99 {m.ttft_p99_ms:.1f} [{m.ttft_p99_ms_lo:.1f}, {m.ttft_p99_ms_hi:.1f}] ms, ITL P99 "
        f"{m.itl_p99_ms:.2f} [{m.itl_p99_ms_lo:.2f}, {m.itl_p99_ms_hi:.2f}] ms, steady {m.steady}, {m.requests} measured"
    )
    assert meta["stop_reason"] in ("targets_met", "time_budget", "max_requests")
    assert meta["requests_run"] == len(df) > 40 and meta["stream_parts"] >= 2  # it continued
    assert (df["status"] == "ok").all() and df["request_id"].tolist() == list(range(len(df)))
    assert meta["frontend_metrics"]["requests_total"] == len(df)  # every continuation request reached Dynamo
    assert meta["converged"] == (meta["precision_ratio"] <= 1 and m.steady)
    for name in ("itl_mean_ms", "itl_p99_ms", "ttft_p99_ms", "e2e_p99_ms"):
        iv = m.interval(name)
        if name.endswith("_p99_ms") and iv.lo != iv.lo:
            # host stalls cluster the tail in a few batches: the data cannot bound this P99, and the
            # point must say so (not converged, stopped by its budget, precision unbounded)
            assert not meta["converged"] and meta["stop_reason"] in ("time_budget", "max_requests"), (name, iv)
            assert meta["precision_ratio"] == float("inf"), (name, iv)
            continue
        assert iv.lo < iv.value < iv.hi, (name, iv)  # live ITL has an interval now, from timed samples


def template_stickiness(df) -> float:
    """Mean share of a template's requests served by its most-used worker (1.0 = perfect affinity)."""
    ok = df[df["status"] == "ok"]
    shares = [g["decode_worker"].value_counts(normalize=True).iloc[0] for _, g in ok.groupby("template")]
    return float(np.mean(shares))


def test_affinity_vs_scatter(small_profile) -> None:
    # 16 templates sharing 3 of 4 blocks: with affinity each template stays on one worker and
    # misses once; with omega = 0 the router only balances load and templates miss on both.
    prof = small_profile(
        templates=16,
        prefix_tokens=192,
        input_tokens={"dist": "fixed", "value": 256},
        output_tokens={"dist": "fixed", "value": 8},
        requests_per_point=96,
        warmup_requests=0,
        cooldown_requests=0,
    )
    out = {}
    for name, topo in (("affinity", "2A4@omega=8"), ("scatter", "2A4@omega=0")):
        with DynamoLocalBackend().deploy(prof, parse_topology(topo), trial_id=f"live-{name}") as dep:
            run = dep.run_point(4, seed=3)
        ok = run.requests[run.requests["status"] == "ok"]  # the whole run: the cold-cache misses are the signal
        out[name] = (float(ok["cached_tokens"].sum() / ok["input_tokens"].sum()), template_stickiness(run.requests))
    print("hit rate, template stickiness:", out)
    (hit_a, stick_a), (hit_s, stick_s) = out["affinity"], out["scatter"]
    assert hit_a > hit_s + 0.03, out
    assert stick_a > 0.8 and stick_s < stick_a - 0.1, out


def test_worker_killed_mid_burst_fails_the_trial_cleanly(small_profile) -> None:
    prof = small_profile(
        output_tokens={"dist": "fixed", "value": 64}, requests_per_point=400, warmup_requests=0, cooldown_requests=0
    )
    dep = DynamoLocalBackend().deploy(prof, parse_topology("2A4"), trial_id="live-kill")
    pids, work = dep.stack.procs.pids(), dep.work_dir
    victim = dep.stack.workers[1].child.pid
    killer = threading.Timer(1.0, lambda: os.kill(victim, signal.SIGKILL))
    killer.start()
    t = time.monotonic()
    with pytest.raises(BackendError, match="worker1-agg .*exited"):
        with dep:
            dep.run_point(4, seed=4)
    killer.cancel()
    assert time.monotonic() - t < 60
    assert dep.closed
    assert_gone(pids, work)


def test_set_router_restarts_only_the_frontend(small_profile) -> None:
    prof = small_profile(requests_per_point=24, warmup_requests=0, cooldown_requests=0)
    with DynamoLocalBackend().deploy(prof, parse_topology("2A4@omega=1"), trial_id="live-router") as dep:
        worker_pids = [w.child.pid for w in dep.stack.workers]
        dep.set_router(parse_topology("2A4@omega=0,tau=0.5").router)
        assert [w.child.pid for w in dep.stack.workers] == worker_pids
        run = dep.run_point(4, seed=5)
    assert (run.requests["status"] == "ok").all()
    assert dep.topology.router.overlap_weight == 0


def _listening_0000(pid: int) -> set[int]:
    """TCP ports process ``pid``'s network namespace listens on at 0.0.0.0 (from its /proc/<pid>/net/tcp)."""
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port = local.split(":")
        if state == "0A" and addr == "00000000":
            ports.add(int(port, 16))
    return ports


def test_as_root_the_stack_lives_in_a_private_network_namespace(small_profile) -> None:
    prof = small_profile(requests_per_point=16, warmup_requests=0, cooldown_requests=0)
    with DynamoLocalBackend().deploy(prof, parse_topology("2A4"), trial_id="live-netns") as dep:
        if dep.net.mode == "host":
            if os.environ.get("CI", "").lower() not in ("", "0", "false", "no") and os.geteuid() == 0:
                pytest.fail(f"CI as root must run the stack in a private network namespace: {dep.net.reason}")
            pytest.skip(f"stack in the host's network namespace: {dep.net.reason}")
        worker = dep.stack.workers[0].child.pid
        assert os.readlink(f"/proc/{worker}/ns/net") != os.readlink("/proc/self/ns/net")
        leaked = _listening_0000(worker)  # Dynamo's ZMQ publishers
        assert leaked, "expected Dynamo 1.6.1's ZMQ publishers on 0.0.0.0 inside the namespace"
        for port in leaked:
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        run = dep.run_point(4, seed=6)  # the load client reaches the frontend from inside
    assert (run.requests["status"] == "ok").all() and run.meta["network_namespace"] == "private"
