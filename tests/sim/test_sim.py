"""The discrete-event simulator end to end: conservation, determinism, KV exhaustion and preemption,
prefix caching, open-loop spikes, mid-run router changes, aggregated and disaggregated serving."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autotune.backends.sim import SimBackend
from autotune.feasibility import check_feasibility
from autotune.metrics import summarize
from autotune.perf import get_perf_model
from autotune.profile import Profile, _deep_merge, load_profile, profile_from_dict
from autotune.records import REQUEST_COLUMNS, PointRun
from autotune.sim.cluster import ClusterSim
from autotune.topology import RouterSettings, parse_topology
from autotune.workload import ArrivalSchedule, request_stream

BASE: dict[str, Any] = {
    "name": "t",
    "cluster": {"nodes": 3, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 5,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 64},
        "concurrency": [32],
        "requests_per_point": 400,
        "warmup_requests": 40,
        "cooldown_requests": 40,
    },
    "measurement": {"adaptive": False},  # these tests check the simulator's mechanics on a fixed count
}

# A small-memory cluster: Llama-3.1-8B BF16 (16.1 GB) on H100s cut to 26 GB, leaving ~25.5k KV tokens
# (398 blocks of 64) per TP1 worker: KV pressure with few requests.
TINY: dict[str, Any] = {
    "cluster": {"nodes": 1, "gpu": {"base": "H100", "hbm_gb": 26}, "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16", "kv_dtype": "bf16"},
}


def make(over: dict[str, Any] | None = None, *more: dict[str, Any]) -> Profile:
    data = copy.deepcopy(BASE)
    for o in (over or {}, *more):
        data = _deep_merge(data, o)
    return profile_from_dict(data)


def run(profile: Profile, topo: str, concurrency: int, seed: int = 0, perf: str = "roofline", **kw: Any) -> PointRun:
    return SimBackend(perf).deploy(profile, parse_topology(topo)).run_point(concurrency, seed=seed, **kw)


def sim_closed(
    profile: Profile, topo: str, concurrency: int, n: int, seed: int = 0, controller: Any = None
) -> ClusterSim:
    """The ClusterSim itself, when a test needs its counters (token totals, router changes)."""
    t = parse_topology(topo)
    sim = ClusterSim(profile, t, get_perf_model("roofline", profile), check_feasibility(t, profile), seed)
    sim.run_closed(request_stream(profile.workload, n, seed), concurrency, controller)
    return sim


def check_conservation(r: PointRun, n: int, disagg: bool) -> None:
    df = r.requests
    assert list(df.columns) == list(REQUEST_COLUMNS)
    assert len(df) == n and df["request_id"].is_unique and sorted(df["request_id"]) == list(range(n))
    assert (df["status"] == "ok").all()
    for col in ("arrival_s", "routed_s", "prefill_start_s", "prefill_end_s", "first_token_s", "completion_s"):
        assert df[col].notna().all(), col
    assert (df["arrival_s"] <= df["routed_s"]).all()
    assert (df["routed_s"] <= df["prefill_start_s"]).all()
    assert (df["prefill_start_s"] < df["prefill_end_s"]).all()
    assert (df["first_token_s"] <= df["completion_s"]).all()
    assert (df["first_token_s"] >= df["prefill_end_s"]).all()
    assert (df["cached_tokens"] < df["input_tokens"]).all() and (df["cached_tokens"] >= 0).all()
    if disagg:
        assert (df["prefill_end_s"] <= df["kv_transfer_end_s"]).all()
        assert (df["kv_transfer_end_s"] <= df["first_token_s"]).all()
        assert (df["prefill_worker"] != df["decode_worker"]).all()
        assert len(r.decisions["prefill"]) == n and len(r.decisions["decode"]) == n
    else:
        assert df["kv_transfer_end_s"].isna().all()
        assert (df["prefill_worker"] == df["decode_worker"]).all()
        assert len(r.decisions["agg"]) == n
    # each request was routed once per stage, and the log names the worker it went to
    for stage, log in r.decisions.items():
        assert sorted(log.request_id) == list(range(n))
        col = "decode_worker" if stage == "decode" else "prefill_worker"
        chosen = {rid: log.workers[c] for rid, c in zip(log.request_id, log.chosen, strict=True)}
        assert all(chosen[rid] == w for rid, w in zip(df["request_id"], df[col], strict=True))
    multi = df["output_tokens"] > 1
    assert (df.loc[multi, "itl_mean_ms"] > 0).all()


@pytest.mark.parametrize("topo", ["1P4-2D4", "2P2-3D4@tau=0.5", "3A4", "2A8@tau=1,omega=0"])
@pytest.mark.parametrize("perf", ["roofline", "mocker"])
def test_conservation(topo: str, perf: str) -> None:
    prof = make(
        {
            "workload": {
                "input_tokens": {"dist": "uniform", "min": 100, "max": 900},
                "output_tokens": {"dist": "normal", "mean": 60, "std": 30, "min": 1, "max": 200},
            }
        }
    )
    r = run(prof, topo, 48, perf=perf)
    check_conservation(r, 400, parse_topology(topo).disaggregated)
    m = summarize(r)
    df = r.requests
    in_window = df["arrival_s"].between(m.steady_start_s, m.steady_end_s)
    assert m.requests == int((in_window & (df["status"] == "ok")).sum()) >= 200  # every steady-state arrival counted
    assert m.rejected == 0 and m.output_tok_s > 0
    assert m.ttft_p50_ms <= m.ttft_p99_ms and m.itl_p50_ms <= m.itl_p99_ms


@pytest.mark.parametrize("topo,first_from_prefill", [("1P4-2D4", False), ("3A4", True)])
def test_token_counts_add_up(topo: str, first_from_prefill: bool) -> None:
    """Every decode step emits one token per running sequence: the ITL records (one per decode segment,
    tokens = batch × steps) sum to the requests' output tokens, less the first token where the prefill
    step emits it (aggregated)."""
    prof = make({"workload": {"output_tokens": {"dist": "uniform", "min": 1, "max": 120}}})
    sim = sim_closed(prof, topo, 40, 300)
    osl = sum(s.osl for s in sim.seqs)
    emitted = sum(tokens for _, tokens, _ in sim._itl)
    assert emitted == osl - (len(sim.seqs) if first_from_prefill else 0)
    assert all(s.done >= s.first_token for s in sim.seqs)
    assert sim._pending == 0 and sim._next_rid == 300


def test_paper_profile_point() -> None:
    prof = load_profile("paper-70b-1p5d")
    prof = prof.model_copy(update={"measurement": prof.measurement.model_copy(update={"adaptive": False})})
    r = run(prof, "1P4-5D4", 64, requests=600)
    check_conservation(r, 600, True)
    assert r.gpus == 24 and r.backend == "sim" and r.meta["perf_model"] == "roofline"


def test_determinism() -> None:
    prof = make({"workload": {"input_tokens": {"dist": "uniform", "min": 100, "max": 700}}})
    a = run(prof, "2P4-2D4@tau=0.7", 48, seed=3)
    b = run(prof, "2P4-2D4@tau=0.7", 48, seed=3)
    c = run(prof, "2P4-2D4@tau=0.7", 48, seed=4)
    pd.testing.assert_frame_equal(a.requests, b.requests)
    assert a.decisions["prefill"].to_frame().equals(b.decisions["prefill"].to_frame())
    assert np.array_equal(a.itl_ms, b.itl_ms) and a.window_s == b.window_s
    assert not a.requests.equals(c.requests)
    assert not np.array_equal(a.requests["input_tokens"], c.requests["input_tokens"])


def test_router_randomness_is_seeded() -> None:
    """Same workload draw, router temperature > 0: the choices follow the seed."""
    prof = make()
    a = run(prof, "2P4-2D4@tau=2", 32, seed=1).requests["prefill_worker"].to_numpy()
    b = run(prof, "2P4-2D4@tau=2", 32, seed=1).requests["prefill_worker"].to_numpy()
    c = run(prof, "2P4-2D4@tau=2", 32, seed=2).requests["prefill_worker"].to_numpy()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_kv_exhaustion_preempts_and_completes_aggregated() -> None:
    """64 clients × (512 + 1024) tokens need ~98k KV tokens; the worker has ~25.5k: preemption."""
    prof = make(
        TINY,
        {
            "workload": {
                "templates": 1,
                "prefix_tokens": 0,
                "input_tokens": {"dist": "fixed", "value": 512},
                "output_tokens": {"dist": "fixed", "value": 1024},
                "concurrency": [64],
                "requests_per_point": 200,
                "warmup_requests": 10,
                "cooldown_requests": 10,
            }
        },
    )
    feas = check_feasibility(parse_topology("1A1"), prof)
    assert feas.ok and 20_000 < feas.kv_tokens["agg"] < 30_000
    r = run(prof, "1A1", 64)
    check_conservation(r, 200, False)
    assert r.requests["preemptions"].sum() > 0
    assert (r.requests["output_tokens"] == 1024).all()
    # without the pressure (8 clients × 1536 tokens fit) nothing is preempted
    assert run(prof, "1A1", 8, requests=60).requests["preemptions"].sum() == 0


def test_kv_exhaustion_disaggregated_decode() -> None:
    """Decode workers fill up: hand-offs wait for blocks, running sequences are preempted and
    recomputed, and still every request completes once."""
    prof = make(
        TINY,
        {
            "workload": {
                "templates": 1,
                "prefix_tokens": 0,
                "input_tokens": {"dist": "fixed", "value": 256},
                "output_tokens": {"dist": "fixed", "value": 2048},
                "concurrency": [48],
                "requests_per_point": 150,
                "warmup_requests": 10,
                "cooldown_requests": 10,
            }
        },
    )
    sim = sim_closed(prof, "1P1-1D1", 48, 150)
    r = sim.result(48, 10, 10)
    check_conservation(r, 150, True)
    assert r.requests["preemptions"].sum() > 0
    # decode steps emit every output token once (recomputation re-runs prefill, it does not re-emit);
    # a request preempted before its first decode step gets its first token from the recompute prefill
    emitted = sum(tokens for _, tokens, _ in sim._itl)
    assert 150 * 2048 - r.requests["preemptions"].sum() <= emitted <= 150 * 2048
    dec = sim.engines[1]
    assert dec.kv.private == 0 and not dec.kv.refs and not dec.decoding  # everything released at the end


@pytest.mark.parametrize(
    "prefix,bs,isl,expect",
    [
        (512, 64, 1024, 0.5),  # 8 of 16 blocks shared
        (96, 64, 128, 0.5),  # the paper profile: only whole blocks hit, 64 of 128 tokens
        (1000, 32, 1000, 0.992),  # 31 whole blocks of 32, and at least one token is always computed
    ],
)
def test_prefix_hit_rate_matches_template_share(prefix: int, bs: int, isl: int, expect: float) -> None:
    prof = make(
        {
            "engine": {"block_size": bs},
            "workload": {"templates": 4, "prefix_tokens": prefix, "input_tokens": {"dist": "fixed", "value": isl}},
        }
    )
    m = summarize(run(prof, "2A4", 32))
    assert m.prefix_hit_rate == pytest.approx(expect, abs=0.02)
    no_share = make({"workload": {"prefix_tokens": 0}})
    assert summarize(run(no_share, "2A4", 32)).prefix_hit_rate == 0.0


def test_open_loop_spike() -> None:
    """5 req/s, 50 req/s for 10 s from t=20 s, then 5 req/s: arrivals follow the schedule and the
    spike, beyond what one TP1 worker on long prompts can serve, queues up TTFT."""
    prof = make(
        TINY,
        {
            "workload": {
                "arrival": "open",
                "rate_rps": 5,
                "spike": {"start_s": 20, "duration_s": 10, "peak_rate_rps": 50},
                "templates": 1,
                "prefix_tokens": 0,
                "input_tokens": {"dist": "fixed", "value": 2048},
                "output_tokens": {"dist": "fixed", "value": 16},
                "requests_per_point": 700,
                "warmup_requests": 0,
                "cooldown_requests": 0,
            }
        },
    )
    r = run(prof, "1A1", 1)
    assert r.concurrency == -1
    df = r.requests
    check_conservation(r, 700, False)
    assert (df["client"] == -1).all()
    t = df["arrival_s"].to_numpy()
    in_spike = ((t >= 20) & (t < 30)).sum()
    before = (t < 20).sum()
    assert in_spike == pytest.approx(500, rel=0.15) and before == pytest.approx(100, rel=0.3)
    ttft = (df["first_token_s"] - df["arrival_s"]).to_numpy()
    calm = ttft[t < 18]
    spike_end = ttft[(t > 27) & (t < 30)]
    assert np.median(spike_end) > 5 * np.median(calm)


def test_open_loop_schedule_without_profile_spike() -> None:
    """A schedule can be passed explicitly (the controller's spike experiments)."""
    prof = make()
    sched = ArrivalSchedule.from_workload(make({"workload": {"arrival": "open", "rate_rps": 100}}).workload)
    r = SimBackend().deploy(prof, parse_topology("1P4-2D4")).run_point(0, seed=0, requests=300, schedule=sched)
    check_conservation(r, 300, True)
    gaps = np.diff(np.sort(r.requests["arrival_s"].to_numpy()))
    assert gaps.mean() == pytest.approx(0.01, rel=0.2)


class SwitchAt:
    """A controller that switches the router once, at its first tick after ``at_s``."""

    def __init__(self, at_s: float, to: RouterSettings, interval_s: float = 0.25) -> None:
        self.at_s, self.to, self.interval_s = at_s, to, interval_s
        self.ticks: list[tuple[float, int]] = []

    def update(self, now_s: float, ttft_s: list[float]) -> RouterSettings | None:
        self.ticks.append((now_s, len(ttft_s)))
        return self.to if now_s >= self.at_s else None


PRESSURE = {
    "workload": {
        "templates": 64,
        "prefix_tokens": 1024,
        "input_tokens": {"dist": "fixed", "value": 1152},
        "output_tokens": {"dist": "fixed", "value": 32},
        "concurrency": [16],
        "requests_per_point": 1200,
        "warmup_requests": 300,
        "cooldown_requests": 50,
    }
}


def test_controller_changes_router_mid_run() -> None:
    """Cache affinity (τ 0, ω 1) on 4 small-cache prefill workers, switched to load-only (ω 0) at
    t=18 s by a controller: the change is recorded once, the prefill logits go flat, and the prefix
    hit rate of the requests routed after the switch collapses (every worker now sees every template)."""
    prof = make(TINY, PRESSURE)
    ctl = SwitchAt(18.0, RouterSettings(temperature=0.0, overlap_weight=0.0))
    sim = sim_closed(prof, "4P1-2D1@tau=0,omega=1", 16, 2400, controller=ctl)
    assert len(sim.router_changes) == 1
    t_change, text = sim.router_changes[0]
    assert text == "tau=0,omega=0" and 18.0 <= t_change < 18.0 + ctl.interval_s + 1e-9
    assert sum(n for _, n in ctl.ticks) > 0  # the controller saw TTFTs
    assert sim.now > t_change + 10  # the run went on well after the switch
    log = sim.logs["prefill"]
    before = [i for i, t in enumerate(log.time_s) if t < t_change]
    after = [i for i, t in enumerate(log.time_s) if t > t_change]
    assert all(any(x != 0 for x in log.logits[i]) for i in before)
    assert all(all(x == 0 for x in log.logits[i]) for i in after)
    hit_before = np.mean([s.cached / s.isl for s in sim.seqs if t_change / 3 < s.routed < t_change])
    hit_after = np.mean([s.cached / s.isl for s in sim.seqs if s.routed > t_change + 5])
    assert hit_before > 0.7 and hit_after < 0.45, (hit_before, hit_after)


def test_controller_no_change_records_nothing() -> None:
    ctl = SwitchAt(1e9, RouterSettings())
    sim = sim_closed(make(), "1P4-2D4", 16, 200, controller=ctl)
    assert sim.router_changes == [] and len(ctl.ticks) > 0


def test_affinity_raises_hit_rate_under_cache_pressure() -> None:
    """64 templates × 1024-token prefixes (1,024 blocks) over 4 prefill workers of ~398 blocks each: with
    affinity (ω 1) each worker keeps its own templates; with ω 0 every worker sees every template and
    evicts them."""
    prof = make(TINY, PRESSURE)
    hit = {}
    for omega in (0.0, 1.0):
        hit[omega] = summarize(run(prof, f"4P1-2D1@tau=0,omega={omega}", 16)).prefix_hit_rate
    assert hit[1.0] > hit[0.0] + 0.2, hit
    assert hit[1.0] > 0.6


def test_busy_threshold_rejects_and_accounts() -> None:
    """All prefill workers over the queued-prefill threshold → HTTP 503 (status 'rejected');
    closed-loop clients back off and send their next request."""
    prof = make(
        {
            "dynamo": {"busy_prefill_tokens": 300},
            "workload": {"prefix_tokens": 0, "input_tokens": {"dist": "fixed", "value": 256}},
        }
    )
    r = run(prof, "1P4-2D4", 64)
    df = r.requests
    rejected = df["status"] == "rejected"
    assert rejected.sum() > 0 and (~rejected).sum() > 0
    assert len(df) == 400 and df["request_id"].is_unique
    assert (df.loc[rejected, "output_tokens"] == 0).all()
    assert (df.loc[rejected, "error"] == "all workers busy (503)").all()
    assert (df.loc[~rejected, "first_token_s"] <= df.loc[~rejected, "completion_s"]).all()
    m = summarize(r)
    in_window = df["arrival_s"].between(m.steady_start_s, m.steady_end_s)
    assert m.rejected == int(df.loc[in_window, "status"].eq("rejected").sum()) > 0
    assert -1 in r.decisions["prefill"].chosen


def test_closed_loop_keeps_concurrency() -> None:
    """C clients: at any instant at most C requests are in flight, and each client waits for its last."""
    r = run(make(), "1P4-2D4", 24)
    df = r.requests.sort_values("arrival_s")
    for _, g in df.groupby("client"):
        a, d = g["arrival_s"].to_numpy(), g["completion_s"].to_numpy()
        assert (a[1:] >= d[:-1] - 1e-12).all()
    assert df["client"].nunique() == 24
    events = np.concatenate([np.c_[df["arrival_s"], np.ones(len(df))], np.c_[df["completion_s"], -np.ones(len(df))]])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]  # completions first at equal times
    assert np.cumsum(events[:, 1]).max() == 24


def test_disagg_kv_transfer_time() -> None:
    """Cross-node transfer: setup + hand-over + ISL·KVB/TP over the 50 GB/s NIC at η 0.7, no queueing at C=1.

    70B FP8: 163,840 B/token; TP4 ranks move 40,960 B/token each; 1,024 tokens → 41.9 MB
    → 1.198 ms, plus 3 ms setup and 20 ms hand-over."""
    prof = make(
        {
            "kv_transfer": {"setup_ms": 3, "handover_ms": 20, "efficiency": 0.7},
            "workload": {"prefix_tokens": 0, "input_tokens": {"dist": "fixed", "value": 1024}},
        }
    )
    feas = check_feasibility(parse_topology("1P8-1D8"), prof)
    assert feas.placement == ((0,), (1,))  # full-node workers: the transfer crosses the network
    r = run(prof, "1P8-1D8", 1, requests=20)
    df = r.requests
    xfer = (df["kv_transfer_end_s"] - df["prefill_end_s"]).to_numpy()
    expect = 0.023 + 1024 * 163_840 / 8 / (50e9 * 0.7)
    assert xfer == pytest.approx(np.full(len(df), expect), rel=1e-9)
    assert check_feasibility(parse_topology("1P4-1D4"), prof).placement == ((0,), (0,))
    same = run(prof, "1P4-1D4", 1, requests=20).requests  # both TP4 workers on node 0: NVLink
    xfer_nv = (same["kv_transfer_end_s"] - same["prefill_end_s"]).to_numpy()
    assert xfer_nv == pytest.approx(np.full(len(same), 0.023 + 1024 * 40_960 / (900e9 * 0.7)), rel=1e-9)
    assert math.isclose(float(np.ptp(xfer_nv)), 0.0, abs_tol=1e-12)


def test_hit_rate_holds_when_prefill_saturates() -> None:
    """A saturated prefill worker keeps requests waiting (vLLM admits a prefill only while the step's
    token budget has room), so they look up the prefix cache when they start, after their template's
    blocks were published: the hit rate stays at the template share instead of falling with load."""
    prof = make(
        {
            "workload": {
                "templates": 8,
                "prefix_tokens": 1024,
                "input_tokens": {"dist": "fixed", "value": 3072},
                "output_tokens": {"dist": "fixed", "value": 32},
            }
        }
    )
    m = summarize(run(prof, "1P4-4D4", 256, requests=1500))
    assert m.ttft_p50_ms > 200  # queueing at the prefill worker
    assert m.prefix_hit_rate == pytest.approx(1024 / 3072, abs=0.01)


def test_frontend_jitter_spreads_route_delay_around_the_same_mean() -> None:
    """Overhead = fixed part + exponential noise with the configured mean; jitter 0 is one constant."""
    flat = make({"dynamo": {"frontend_overhead_ms": 4.5, "frontend_jitter_ms": 0.0}})
    noisy = make({"dynamo": {"frontend_overhead_ms": 4.5, "frontend_jitter_ms": 2.0}})
    d0 = (run(flat, "2A4", 16, requests=2000).requests.eval("routed_s - arrival_s") * 1000).to_numpy()
    d1 = (run(noisy, "2A4", 16, requests=2000).requests.eval("routed_s - arrival_s") * 1000).to_numpy()
    assert d0 == pytest.approx(np.full(len(d0), 4.5), abs=1e-9)
    assert d1.min() >= 2.5 - 1e-9  # never below the fixed part
    assert d1.mean() == pytest.approx(4.5, rel=0.06)
    assert d1.std() == pytest.approx(2.0, rel=0.1)


def test_frontend_jitter_breaks_phase_locking() -> None:
    """Fixed lengths in a closed loop: without noise, requests admitted together stay together for the
    whole run (three latencies repeat exactly); with the frontend's noise they drift apart, as on a real
    stack (autotune validate, 2A4 C=8: live end-to-end latencies spread over ~40 ms)."""
    h100 = {
        "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
        "workload": {
            "templates": 4,
            "prefix_tokens": 64,
            "input_tokens": {"dist": "fixed", "value": 128},
            "output_tokens": {"dist": "fixed", "value": 16},
            "requests_per_point": 400,
            "warmup_requests": 40,
            "cooldown_requests": 40,
        },
    }
    distinct = {}
    for jitter in (0.0, 2.0):
        sim = sim_closed(make(h100, {"dynamo": {"frontend_jitter_ms": jitter}}), "2A4", 8, 400, seed=1)
        df = sim.result(8, 40, 40).requests  # synchronised start (spread 0): the setting where locking shows
        e2e_ms = (df.loc[df["measured"], "completion_s"] - df.loc[df["measured"], "arrival_s"]) * 1000
        distinct[jitter] = e2e_ms.round(3).nunique()
    assert distinct[0.0] <= 3
    assert distinct[2.0] > 20


def test_frontend_jitter_is_seeded() -> None:
    prof = make({"dynamo": {"frontend_jitter_ms": 2.0}})
    a, b = run(prof, "2A4", 16, seed=3).requests, run(prof, "2A4", 16, seed=3).requests
    pd.testing.assert_frame_equal(a, b)
    assert not run(prof, "2A4", 16, seed=4).requests["routed_s"].equals(a["routed_s"])


def test_validate_fits_the_jitter_a_run_shows() -> None:
    """Round trip: the jitter fitted from a run's route delays is the jitter that run was given."""
    from autotune.validate import fit_frontend_jitter_ms, mocker_equivalent

    prof = make({"dynamo": {"frontend_overhead_ms": 6.0, "frontend_jitter_ms": 2.5}})
    r = run(prof, "2A4", 16, requests=3000)
    assert fit_frontend_jitter_ms(r) == pytest.approx(2.5, rel=0.12)
    assert mocker_equivalent(make(), r).dynamo.frontend_jitter_ms <= 4.5  # capped at the profile's overhead
    few = dataclasses.replace(r, requests=r.requests.head(10))
    assert fit_frontend_jitter_ms(few) is None
    assert mocker_equivalent(make(), few).dynamo.frontend_jitter_ms == make().dynamo.frontend_jitter_ms


def test_delivery_noise_keeps_the_mean_and_widens_the_tail() -> None:
    from autotune.metrics import weighted_quantile
    from autotune.sim.delivery import with_delivery_noise

    v, w = np.array([20.0, 40.0]), np.array([9.0, 1.0])
    same = with_delivery_noise(v, w, 0.0)
    assert (same[0] == v).all() and (same[1] == w).all()
    nv, nw, times = with_delivery_noise(np.array([20.0]), np.array([5.0]), 1.0, np.array([3.0]))
    assert times is not None and len(times) == len(nv) and (times == 3.0).all()
    assert float(np.sum(nv * nw) / np.sum(nw)) == pytest.approx(20.0, abs=1e-9)
    assert nw.sum() == pytest.approx(5.0)
    # a Laplace(1 ms) gap: P99 − P50 = ln 50 ≈ 3.9 ms, P50 − P10 = ln 5 ≈ 1.6 ms (quadrature, within 10 %)
    assert weighted_quantile(nv, nw, 0.99) - 20 == pytest.approx(math.log(50), rel=0.1)
    assert 20 - weighted_quantile(nv, nw, 0.1) == pytest.approx(math.log(5), rel=0.1)


def test_token_jitter_in_the_sim_and_its_fit() -> None:
    """dynamo.token_jitter_ms widens simulated ITL percentiles, not the mean; validate's fit recovers it."""
    from autotune.validate import fit_token_jitter_ms

    clean, noisy = run(make(), "1P4-2D4", 16), run(make({"dynamo": {"token_jitter_ms": 1.5}}), "1P4-2D4", 16)
    mc, mn = summarize(clean), summarize(noisy)
    assert mn.itl_mean_ms == pytest.approx(mc.itl_mean_ms, rel=0.01)  # exact but for gaps cut at 0
    assert mn.itl_p99_ms > mc.itl_p99_ms + 2.0
    assert fit_token_jitter_ms(noisy, clean) == pytest.approx(1.5, rel=0.25)
    assert fit_token_jitter_ms(clean, noisy) == 0.0
