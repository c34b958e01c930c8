"""Unit tests of the dynamo-local helpers that need no running stack: log parsing, router-state
replay, metrics parsing, mocker timing tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autotune.dynamo import logparse, scrape
from autotune.dynamo.flags import router_args
from autotune.dynamo.mocker_timing import plan_timing, tabulate
from autotune.dynamo.point import measured_mask
from autotune.dynamo.reconstruct import replay
from autotune.dynamo.stack import LOCAL_DYNAMO_VERSION
from autotune.perf import get_perf_model
from autotune.perf.npz import NpzPerfModel, NpzTables
from autotune.profile import profile_from_dict
from autotune.topology import RouterSettings, parse_topology

# Lines as Dynamo 1.6.1 writes them with DYN_LOGGING_JSONL=1 (trimmed to the fields we read).
T = "2026-11-23T01:21:55.{:06d}Z"


def line(us: int, **fields: object) -> str:
    return json.dumps({"time": T.format(us), "level": "INFO", **fields})


def sel(us: int, rid: str, wid: int, wtype: str, logit: float) -> str:
    return line(
        us,
        target="dynamo_kv_router::scheduling::selector",
        message="Selected worker",
        request_id=rid,
        worker_id=wid,
        worker_type=wtype,
        logit=logit,
        router_mode="kv",
        dp_rank="0",
    )


def inp(us: int, rid: str, isl: int, hashes: list[int]) -> str:
    return line(
        us,
        level="DEBUG",
        target="dynamo_kv_router::services::selection::core::run",
        message="[ROUTING_INPUT] request local hashes",
        request_id=rid,
        isl_tokens=isl,
        block_size=64,
        num_blocks=len(hashes),
        local_hashes=str(hashes),
    )


def done(us: int, rid: str, wid: int, phase: str, overlap: int) -> str:
    return line(
        us,
        target="request_span",
        message="route request completed",
        request_id=rid,
        worker_id=str(wid),
        phase=phase,
        overlap_blocks=str(overlap),
        **{"request.outcome": "success"},
    )


def completed(us: int, rid: str) -> str:
    return line(
        us,
        target="dynamo_llm::http::service::metrics",
        message="request completed",
        request_id=rid,
        status="success",
        prefill_worker_id="11",
        decode_worker_id="22",
    )


def test_parse_lines_extracts_routing_events() -> None:
    lines = [
        line(1, target="x", message="Selected model parser route", model="m"),  # not a routing line
        inp(10, "r1", 141, [5, 6]),
        sel(11, "r1", 11, "prefill", 2.203125),
        done(20, "r1", 11, "Prefill", 0),
        completed(40, "r1"),
        "not json at all Selected worker",
    ]
    log = logparse.parse_lines(lines)
    assert log.unparsed == 1
    assert log.inputs[0].hashes == (5, 6) and log.inputs[0].isl_tokens == 141
    s = log.selections[0]
    assert (s.request_id, s.worker_id, s.worker_type, s.logit) == ("r1", 11, "prefill", 2.203125)
    assert log.stages[0].phase == "Prefill" and log.stages[0].overlap_blocks == 0
    assert log.requests[0].prefill_worker_id == 11 and log.requests[0].decode_worker_id == 22
    assert abs(s.t - log.inputs[0].t - 1e-6) < 1e-7


def test_worker_instance_id_from_worker_log(tmp_path) -> None:
    p = tmp_path / "w.log"
    p.write_text(
        line(1, message="something else")
        + "\n"
        + line(
            2,
            target="dynamo_llm::fpm_publisher",
            message="FPM direct publisher started",
            worker_id="12183913400101386648",
        )
        + "\n"
    )
    assert logparse.worker_instance_id(p) == 12183913400101386648
    assert logparse.worker_instance_id(tmp_path / "missing.log") is None


def agg_replay(router: RouterSettings):
    # Two aggregated workers (ids 11, 22). r1 and r2 share their first block (hash 5).
    lines = [
        inp(0, "r1", 128, [5, 6]),
        sel(1, "r1", 11, "decode", 4.0),
        inp(100, "r2", 128, [5, 7]),
        sel(101, "r2", 22, "decode", 8.0),  # r1 still prefilling on 11
        done(500, "r1", 11, "Aggregated", 0),
        done(600, "r2", 22, "Aggregated", 0),
        inp(700, "r3", 128, [5, 8]),
        sel(701, "r3", 11, "decode", 3.0),  # both idle, 11 has block 5 cached
        done(900, "r3", 11, "Aggregated", 1),
    ]
    log = logparse.parse_lines(lines)
    t0 = log.selections[0].t - 1.0
    return replay(
        log,
        stage_workers={"agg": [0, 1]},
        worker_index={11: 0, 22: 1},
        request_index={"r1": 0, "r2": 1, "r3": 2},
        prefill_end={"r1": t0 + 1.0 + 200e-6, "r2": t0 + 1.0 + 300e-6},
        request_end={},
        output_tokens={"r1": 4, "r2": 4, "r3": 4},
        router=router,
        t0_wall=t0,
    )


def test_replay_rebuilds_costs_of_every_candidate() -> None:
    logs, stats = agg_replay(RouterSettings(0.0, 1.0, 1.0))
    d = logs["agg"]
    assert len(d) == 3 and d.request_id == [0, 1, 2] and d.chosen == [0, 1, 0]
    # r2: worker 0 holds r1 (128 prefill tokens, blocks {5,6}); r2 shares block 5 -> 1 new block there.
    assert d.active_prefill_tokens[1] == (128, 0) and d.active_blocks[1] == (2, 0)
    assert d.logits[1] == (4.0 + 2 + 1, 4.0)
    # r3: both finished; worker 0 cached r1's blocks, worker 1 r2's: overlap 1 block on both.
    assert d.overlap_blocks[2] == (1, 1) and d.logits[2] == (3.0, 3.0)
    assert stats.logit_abs_err_mean == pytest.approx(4.0 / 3)  # r2 logged 8.0 vs replayed 4.0
    assert stats.overlap_agreement == 1.0 and stats.unmatched_selections == 0
    frame = d.to_frame()
    assert len(frame) == 6 and frame["chosen"].sum() == 3


def test_replay_with_zero_omega_ignores_cache_and_prefill() -> None:
    logs, _ = agg_replay(RouterSettings(0.0, 0.0, 1.0))
    assert logs["agg"].logits[2] == (2.0, 2.0)


def test_router_flags_use_161_names() -> None:
    flags = router_args(LOCAL_DYNAMO_VERSION, RouterSettings(0.5, 0.0, 2.0))
    assert flags[flags.index("--router-temperature") + 1] == "0.5"
    assert flags[flags.index("--router-prefill-load-scale") + 1] == "0"
    assert flags[flags.index("--router-kv-overlap-score-credit") + 1] == "0"  # omega 0 forces credit 0
    assert "--router-mode" in flags and "kv" in flags


def test_measured_mask() -> None:
    assert measured_mask(10, 2, 3).tolist() == [False] * 2 + [True] * 5 + [False] * 3
    assert not measured_mask(4, 3, 3).any()


METRICS = """# HELP dynamo_frontend_requests_total x
# TYPE dynamo_frontend_requests_total counter
dynamo_frontend_requests_total{endpoint="completions",model="m",status="success"} 7
dynamo_frontend_requests_total{endpoint="chat_completions",model="m",status="success"} 3
# TYPE dynamo_frontend_cached_tokens histogram
dynamo_frontend_cached_tokens_bucket{model="m",le="+Inf"} 10
dynamo_frontend_cached_tokens_sum{model="m"} 640
dynamo_frontend_cached_tokens_count{model="m"} 10
# TYPE dynamo_frontend_input_sequence_tokens histogram
dynamo_frontend_input_sequence_tokens_sum{model="m"} 1280
dynamo_frontend_input_sequence_tokens_count{model="m"} 10
"""


def test_scrape_parse_and_summaries() -> None:
    snap = scrape.parse(METRICS)
    assert scrape.total(snap, "dynamo_frontend_requests_total") == 10
    assert scrape.total(snap, "dynamo_frontend_requests_total", endpoint="completions") == 7
    summary = scrape.summarize_frontend({}, snap)
    assert summary["requests_total"] == 10 and summary["hit_rate"] == 0.5


@pytest.fixture(scope="module")
def h100():
    return profile_from_dict(
        {
            "name": "h100-70b-fp8",
            "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
            "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
            "search": {"operating_point": "grid"},
        }
    )


def test_tables_reproduce_the_perf_model_and_tp_differs(h100, tmp_path) -> None:
    model = get_perf_model("roofline", h100)
    plan = plan_timing(h100, parse_topology("1P4-2D8"), tmp_path, timing="roofline", speedup=2.0)
    assert plan.source == "npz:roofline" and {k[1] for k in plan.roles} == {4, 8}
    for tp in (4, 8):
        tables = NpzTables.load(tmp_path / f"timing_tp{tp}.npz")
        timer = model.timer(tp)
        for t in (64, 1000, 3000):
            assert tables.prefill_ms(t) == pytest.approx(timer.step_s(t, t * t / 2, 0, 0, 0) * 1e3, rel=0.01)
        assert tables.decode_ms(16, 16 * 3100) == pytest.approx(timer.step_s(0, 0, 16, 16 * 3100, 0.1) * 1e3, rel=0.02)
    t4, t8 = (NpzTables.load(tmp_path / f"timing_tp{tp}.npz") for tp in (4, 8))
    assert t8.decode_ms(8, 8 * 3000) < t4.decode_ms(8, 8 * 3000)
    name, opts = plan.sim_backend_options()
    sim_model = get_perf_model(name, h100, **opts)
    assert isinstance(sim_model, NpzPerfModel)
    assert sim_model.timer(4).step_s(1000, 0, 0, 0, 0) == pytest.approx(t4.prefill_ms(1000) / 1e3 / 2.0)


def test_npz_has_the_mocker_layout(h100, tmp_path) -> None:
    tables = tabulate(
        get_perf_model("roofline", h100).timer(4),
        max_prefill_tokens=8192,
        kv_capacity=100_000,
        max_context=4000,
        resolution=10,
    )
    path = tables.save(tmp_path / "t.npz")
    with np.load(path) as z:
        assert set(z.files) == {
            "prefill_isl",
            "prefill_ttft_ms",
            "decode_active_kv_tokens",
            "decode_context_length",
            "decode_itl",
        }
        assert z["decode_itl"].shape == (len(z["decode_active_kv_tokens"]), len(z["decode_context_length"]))
        assert np.all(np.diff(z["prefill_isl"]) > 0) and np.all(np.diff(z["decode_context_length"]) > 0)


def test_mocker_timing_requested_or_fallback(h100, tmp_path) -> None:
    plan = plan_timing(h100, parse_topology("2A4"), tmp_path, timing="mocker")
    assert plan.source == "mocker-default" and all(w.npz is None for w in plan.roles.values())
    assert plan.sim_backend_options() == ("mocker", {"speedup": 1.0})
    bad = plan_timing(h100, parse_topology("2A4"), tmp_path, timing="no-such-model")
    assert bad.source == "mocker-default" and "could not be tabulated" in bad.note
