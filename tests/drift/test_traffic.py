"""Traffic drift: a window of real traffic against the workload the study assumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.drift.traffic import assumed_figures, traffic_drift, traffic_spec, with_traffic
from autotune.errors import InputError
from autotune.profile import Profile, load_profile, profile_from_dict
from autotune.traces.generate import mooncake_records, write_trace

BASE = {
    "name": "traffic",
    "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
    "model": "Llama-3.1-8B",
    "workload": {
        "templates": 4,
        "prefix_tokens": 64,
        "input_tokens": {"dist": "normal", "mean": 1024, "std": 300, "min": 128},
        "output_tokens": {"dist": "normal", "mean": 128, "std": 40},
        "concurrency": [8, 16],
    },
}


def _profile(**workload: object) -> Profile:
    return profile_from_dict({**BASE, "workload": {**BASE["workload"], **workload}}, "traffic")


def _trace(tmp_path: Path, profile: Profile, name: str, n: int = 800) -> Path:
    path = tmp_path / name
    write_trace(path, mooncake_records(profile.workload, n, rate_rps=10.0, block_tokens=16, seed=7))
    return path


def test_traffic_like_the_study_assumed_has_not_drifted(tmp_path: Path) -> None:
    study = _profile()
    spec = traffic_spec(_trace(tmp_path, study, "same.jsonl"), "mooncake", None)
    drifts, info = traffic_drift(study, spec, 0.15)
    assert info["requests"] == 800
    assert {d.figure for d in drifts} == {"input_tokens_mean", "output_tokens_mean"}  # closed loop: no rate assumed
    assert not any(d.drifted for d in drifts), drifts


def test_longer_prompts_are_drift_and_the_retune_replays_them(tmp_path: Path) -> None:
    study = _profile()
    now = _profile(input_tokens={"dist": "normal", "mean": 2048, "std": 600, "min": 128})
    spec = traffic_spec(_trace(tmp_path, now, "longer.jsonl"), "mooncake", None)
    drifts, _ = traffic_drift(study, spec, 0.15)
    moved = {d.figure: d for d in drifts}
    assert moved["input_tokens_mean"].drifted and moved["input_tokens_mean"].worse
    assert not moved["output_tokens_mean"].drifted
    retune = with_traffic(study, spec)
    assert retune.workload.trace is not None and retune.workload.trace.mode == "closed_loop"
    assert assumed_figures(retune)["input_tokens_mean"].value == pytest.approx(moved["input_tokens_mean"].measured)


def test_an_open_loop_study_is_judged_on_its_rate_too(tmp_path: Path) -> None:
    study = _profile(arrival="open", rate_rps=10.0)
    spec = traffic_spec(_trace(tmp_path, study, "rate.jsonl"), "mooncake", 30.0)
    drifts, info = traffic_drift(study, spec, 0.15)
    assert "rate_rps" in {d.figure for d in drifts} and info["start_s"] > 0 and info["requests"] < 800
    faster = _profile(arrival="open", rate_rps=10.0)
    path = tmp_path / "fast.jsonl"
    write_trace(path, mooncake_records(faster.workload, 800, rate_rps=25.0, block_tokens=16, seed=7))
    drifts, _ = traffic_drift(study, traffic_spec(path, "mooncake", None), 0.15)
    assert {d.figure: d for d in drifts}["rate_rps"].drifted


def test_a_missing_traffic_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--traffic: .*no such file"):
        traffic_spec(tmp_path / "none.jsonl", "mooncake", None)


def test_shipped_profile_assumptions_are_exact_values() -> None:
    fig = assumed_figures(load_profile("paper-70b-1p5d"))
    assert fig["input_tokens_mean"].lo == fig["input_tokens_mean"].hi == fig["input_tokens_mean"].value
