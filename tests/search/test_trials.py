"""The stored trial (``search/trials.py``): ``record`` then ``read_result`` gives back the identical
``TrialResult``, in memory and through an RDB storage (what ``--resume`` and ``report`` read)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pytest

from autotune.metrics import HEADLINE, PointMetrics
from autotune.scoring import PointScore, TrialResult
from autotune.search import trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _metrics(concurrency: int, scale: float) -> PointMetrics:
    return PointMetrics(
        concurrency=concurrency,
        requests=120,
        rejected=1,
        errors=2,
        output_tok_s=5123.25 * scale,
        tok_s_per_gpu=640.40625 * scale,
        req_s=12.5,
        ttft_p50_ms=81.0,
        ttft_p99_ms=310.75 * scale,
        itl_p50_ms=11.5,
        itl_p99_ms=24.125,
        itl_mean_ms=12.0625,
        e2e_p99_ms=4100.5,
        prefix_hit_rate=0.4375,
        preemptions=3,
        steady_start_s=1.5,
        steady_end_s=30.25,
        steady=True,
        batches=20,
        # every interval bound finite, so == compares them (NaN != NaN)
        **{f"{name}_{side}": 1.0 + (side == "hi") for name in HEADLINE for side in ("lo", "hi")},
    )


def _result() -> TrialResult:
    points = (
        PointScore(
            _metrics(16, 1.0),
            6.5,
            {"prefill": 6.5, "decode": 1.5},
            6.25,
            8.0,
            "below",
            6.0,
            7.0,
            1.0625,
            1.0,
            1.125,
            {"prefill": 1.0, "decode": 1.125},
        ),
        PointScore(
            _metrics(64, 2.0),
            80.5,
            {"prefill": 80.5, "decode": 2.25},
            70.0,
            120.0,
            "saturated",
            75.0,
            86.0,
            1.375,
            1.25,
            1.5,
            {"prefill": 1.0, "decode": 1.75},
        ),
    )
    return TrialResult(
        topology="1xP(tp4)+2xD(tp2)",
        gpus=8,
        points=points,
        knee_concurrency=64,
        poa_objective=80.5,
        tok_s_per_gpu=1280.8125,
        output_tok_s=10246.5,
        ttft_p99_ms=621.5,
        itl_p99_ms=24.125,
        constraints={"ttft_p99": -0.25, "itl_p99": 0.5},
        meta={"seed": 7, "backend": "sim", "concurrency": [16, 64]},
        poa_objective_lo=75.0,
        poa_objective_hi=86.0,
        tok_s_per_gpu_lo=1200.5,
        tok_s_per_gpu_hi=1361.125,
        routing_regret=1.375,
        routing_regret_lo=1.25,
        routing_regret_hi=1.5,
    )


@pytest.fixture(params=["memory", "sqlite"])
def study(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.Study:
    storage = None if request.param == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    return optuna.create_study(storage=storage, directions=list(trials.DIRECTIONS))


def _round_trip(study: optuna.Study, res: TrialResult) -> TrialResult:
    t = study.ask()
    trials.record(t, res)
    study.tell(t, trials.objective_values(res))
    (frozen,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return trials.read_result(frozen)


def test_record_then_read_gives_the_identical_result(study: optuna.Study) -> None:
    res = _result()
    back = _round_trip(study, res)
    assert back == res
    assert back.slo_ok is False and back.points[1].metrics.preemptions == 3
    assert type(back.points[0].metrics.concurrency) is int and type(back.gpus) is int


def test_stored_trial_reads_the_same_everywhere(study: optuna.Study) -> None:
    res = _result()
    _round_trip(study, res)
    (t,) = study.trials
    assert trials.constraints(t) == res.constraints
    assert trials.violation(t) == pytest.approx(0.5)
    assert trials.headline(t)["knee_concurrency"] == 64
    assert trials.points(t) == res.points
    assert t.user_attrs[trials.GPUS] == 8 and t.user_attrs["slo_ok"] is False
    row = trials.trials_frame(study).iloc[0]
    assert (row["topology"], row["poa_hat"], row["tok_s_per_gpu"]) == (res.topology, 80.5, 1280.8125)
    assert (row["routing_regret"], row["routing_regret_lo"], row["routing_regret_hi"]) == (1.375, 1.25, 1.5)


def test_nan_fields_survive_as_nan(study: optuna.Study) -> None:
    """An unpriceable point (PoA-hat NaN), a point with no completed request (latencies NaN) and no
    knee: the objectives stay finite (Optuna fails a NaN value), everything else comes back NaN/None."""
    res = _result()
    empty = dataclasses.replace(
        res.points[0].metrics, requests=0, ttft_p50_ms=math.nan, ttft_p99_ms=math.nan, itl_mean_ms=math.nan
    )
    nan_point = PointScore(empty, math.nan, {"prefill": math.nan}, math.nan, math.nan, "")
    res = dataclasses.replace(
        res, points=(nan_point, res.points[1]), knee_concurrency=None, ttft_p99_ms=math.nan, itl_p99_ms=math.nan
    )
    back = _round_trip(study, res)
    p = back.points[0]
    assert all(math.isnan(v) for v in (p.poa_hat, p.poa_by_stage["prefill"], p.poa_window_median, p.poa_window_p90))
    assert all(math.isnan(v) for v in (p.metrics.ttft_p50_ms, p.metrics.ttft_p99_ms, p.metrics.itl_mean_ms))
    assert math.isnan(back.ttft_p99_ms) and math.isnan(back.itl_p99_ms)
    assert back.knee_concurrency is None
    # everything that is not NaN is unchanged
    assert back.points[1] == res.points[1]
    assert dataclasses.replace(p.metrics, ttft_p50_ms=0.0, ttft_p99_ms=0.0, itl_mean_ms=0.0) == dataclasses.replace(
        empty, ttft_p50_ms=0.0, ttft_p99_ms=0.0, itl_mean_ms=0.0
    )
    same = dict(ttft_p99_ms=0.0, itl_p99_ms=0.0, points=())
    assert dataclasses.replace(back, **same) == dataclasses.replace(res, **same)


def test_a_point_stored_as_one_flat_row_reads_back() -> None:
    """Studies written before the point document had sections (one flat row per point) still report."""
    m = _metrics(16, 1.0)
    flat = {
        **m.as_dict(),
        "poa_hat": 1.5,
        "poa_window_median": 1.4,
        "poa_window_p90": 1.9,
        "regime": "below",
        "poa_prefill": 1.25,
        "poa_decode": 1.75,
    }
    p = trials._point(flat)
    # a legacy point's "poa_hat" was what is now the routing regret; the measured PoA-hat is unknown
    assert p.metrics == m and p.routing_regret == 1.5 and p.regret_by_stage == {"prefill": 1.25, "decode": 1.75}
    assert p.regime == "below" and math.isnan(p.poa_hat) and p.poa_by_stage == {}
    assert math.isnan(p.poa_hat_lo) and math.isnan(p.routing_regret_lo)


def test_a_trial_recorded_before_the_measured_poa_hat_reads_back_as_routing_regret(study: optuna.Study) -> None:
    """Legacy trials (no ``routing_regret`` attribute): their first value and every point's ``poa_hat`` were
    the routing regret; they read back so, with PoA-hat NaN, in the result and in both tables."""
    res = _result()
    legacy_points = [
        {
            "metrics": p.metrics.as_dict(),
            "poa_hat": p.routing_regret,
            "poa_by_stage": p.regret_by_stage,
            "poa_window_median": 1.0,
            "poa_window_p90": 1.5,
            "regime": p.regime,
            "poa_hat_lo": p.routing_regret_lo,
            "poa_hat_hi": p.routing_regret_hi,
        }
        for p in res.points
    ]
    old_scalars = [k for k in trials.SCALARS if not k.startswith("routing_regret")]
    attrs = {k: getattr(res, k) for k in old_scalars}
    attrs.update(poa_objective_lo=1.25, poa_objective_hi=1.5)  # the old objective was the regret
    attrs.update({trials.TOPOLOGY: res.topology, trials.GPUS: res.gpus, trials.POINTS: json.dumps(legacy_points)})
    study.add_trial(
        optuna.trial.create_trial(values=[1.375, res.tok_s_per_gpu], user_attrs=attrs, constraints=res.constraints)
    )
    (frozen,) = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert trials.is_legacy(frozen)
    back = trials.read_result(frozen)
    assert math.isnan(back.poa_objective) and math.isnan(back.poa_objective_lo)
    assert (back.routing_regret, back.routing_regret_lo, back.routing_regret_hi) == (1.375, 1.25, 1.5)
    assert [p.routing_regret for p in back.points] == [1.0625, 1.375]
    assert all(math.isnan(p.poa_hat) for p in back.points)
    assert trials.headline(frozen)["routing_regret"] == 1.375 and math.isnan(trials.headline(frozen)["poa_hat"])
    pts = trials.points_frame([frozen])
    assert pts["poa_hat"].isna().all() and list(pts["routing_regret"]) == [1.0625, 1.375]
