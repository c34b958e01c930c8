"""``run --prescreen sim[:K]``: its flags, the ranking of simulated trials, and what is enqueued live.

The live loop itself runs in tests/live/test_live_prescreen.py (slow); here a small simulated study
stands in for the round's search and an in-memory study for the live one.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from autotune.cli import main
from autotune.cli.run import PRESCREEN_K, parse_prescreen
from autotune.errors import InputError
from autotune.profile import profile_from_dict
from autotune.search import prescreen, trials
from autotune.search.config import StudyConfig
from autotune.search.select import select
from autotune.search.study import load_study, run_study
from tests.search.test_select import _add, _study

TINY = {
    "name": "prescreen-tiny",
    "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 4,
        "prefix_tokens": 64,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [8],
        "requests_per_point": 80,
        "warmup_requests": 8,
        "cooldown_requests": 8,
    },
    "measurement": {"adaptive": False},
    "search": {
        "trials": 6,
        "operating_point": "grid",
        "aggregated_tp": [4, 8],
        "prefill_tp": [4],
        "decode_tp": [4],
        "max_prefill_workers": 1,
        "max_decode_workers": 2,
        "temperature": [0.0, 0.5],
        "overlap_weight": [1.0, 1.0],
        "router_step": 0.5,
    },
    "baselines": ["2A4"],
}


@pytest.mark.parametrize(
    "text,k", [("sim", PRESCREEN_K), ("sim:1", 1), ("sim:7", 7), (" sim:3 ", 3)], ids=["default", "1", "7", "spaces"]
)
def test_prescreen_flag_parses(text: str, k: int) -> None:
    screen = parse_prescreen(text, 3, "dynamo-local", False)
    assert (screen.k, screen.rounds) == (k, 3)
    assert parse_prescreen(None, 2, "k8s", False) is None


@pytest.mark.parametrize(
    "text,backend,resume,fragment",
    [
        ("sim:0", "dynamo-local", False, "is not sim or sim:K"),
        ("sim:", "dynamo-local", False, "is not sim or sim:K"),
        ("live:2", "k8s", False, "is not sim or sim:K"),
        ("sim:²", "k8s", False, "is not sim or sim:K"),
        ("sim:2", "sim", False, "needs a live backend"),
        ("sim:2", "dynamo-local", True, "--resume"),
    ],
)
def test_bad_prescreen_flag_names_it(text: str, backend: str, resume: bool, fragment: str) -> None:
    with pytest.raises(InputError, match="^--prescreen: ") as info:
        parse_prescreen(text, 2, backend, resume)
    assert fragment in str(info.value)


def test_bad_prescreen_flag_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "r"
    with pytest.raises(SystemExit) as info:
        main(["run", "--backend", "dynamo-local", "--prescreen", "sim:x", "-r", str(results)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("autotune: error: --prescreen:"), err
    assert not results.exists()


def test_rank_follows_the_recommendation_and_skips_measured_and_duplicate_configurations() -> None:
    study = _study()
    a = _add(study, 1.2, 100.0, shape="A")  # the highest tok/s per GPU
    b = _add(study, 1.1, 90.0, shape="B")
    _add(study, 1.1, 90.0, shape="B")  # the same configuration again: proposed once
    c = _add(study, 1.0, 80.0, shape="C")
    d = _add(study, 0.9, 120.0, shape="D", cons={"ttft_p99": 0.5})  # misses the SLO: last
    done = study.trials
    assert select(study).trial.number == a
    assert [t.number for t in prescreen.rank(done, 4)] == [a, b, c, d]
    assert [t.number for t in prescreen.rank(done, 2)] == [a, b]
    measured = {done[a].user_attrs[trials.TOPOLOGY]}
    assert [t.number for t in prescreen.rank(done, 2, measured)] == [b, c]
    everything = {t.user_attrs[trials.TOPOLOGY] for t in done}
    assert prescreen.rank(done, 3, everything) == []


@pytest.fixture(scope="module")
def sim_round(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, Path]:
    """One round's simulated search of the tiny space (deterministic for its seed)."""
    prof = profile_from_dict(TINY, "prescreen-tiny")
    root = tmp_path_factory.mktemp("prescreen")
    sim = run_study(prof, StudyConfig(root / "round-1", 6, "sim", seed=prof.seed, jobs=1))
    return sim, root


def test_round_enqueues_the_baseline_and_the_top_k_into_the_live_study(sim_round: tuple[optuna.Study, Path]) -> None:
    sim, root = sim_round
    prof = profile_from_dict(TINY, "prescreen-tiny")
    live = load_study(prof, StudyConfig(root / "live", 10, "dynamo-local", seed=prof.seed), create=True)
    queued = prescreen._enqueue(live, sim, 1, 2, root / "round-1")
    waiting = live.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert queued == len(waiting) == 3  # the baseline, then K = 2
    picks = pd.read_csv(root / "round-1" / prescreen.PICKS)
    assert list(picks["role"]) == ["baseline", "top", "top"]
    assert picks["topology"].is_unique and "2A4@tau=0,omega=1" in set(picks["topology"])
    top = prescreen.rank(sim.get_trials(deepcopy=False), 2, {"2A4@tau=0,omega=1"})
    assert list(picks["topology"][1:]) == [t.user_attrs[trials.TOPOLOGY] for t in top]
    assert [w.system_attrs["fixed_params"] for w in waiting[1:]] == [
        dict(t.params) for t in top
    ]  # exactly the simulator's points
    assert picks["tok_s_per_gpu"].gt(0).all()  # every pick carries the simulator's prediction


def test_prescreen_frame_pairs_each_live_trial_with_its_prediction(tmp_path: Path) -> None:
    (tmp_path / "round-1").mkdir()
    pick = {"round": 1, "role": "top", "topology": "A@tau=0.0,omega=1.0", "sim_trial": 3}
    pd.DataFrame([{**pick, "tok_s_per_gpu": 110.0, "ttft_p99_ms": 50.0, "poa_hat": 1.5}]).to_csv(
        tmp_path / "round-1" / prescreen.PICKS, index=False
    )
    live = _study()
    _add(live, 1.2, 100.0, shape="A")
    _add(live, 1.2, 90.0, shape="Z")  # not a pick (a plain trial): no row
    df = prescreen.prescreen_frame(live, tmp_path)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["round"], row["trial"], row["role"]) == (1, 0, "top")
    assert row["tok_s_per_gpu_predicted"] == 110.0 and row["tok_s_per_gpu_measured"] == 100.0
    assert row["tok_s_per_gpu_rel_error"] == pytest.approx(0.1)
    assert row["poa_hat_rel_error"] == pytest.approx(0.25)
    assert row["tok_s_per_gpu_measured_lo"] < 100.0 < row["tok_s_per_gpu_measured_hi"]


def test_a_failed_recalibration_keeps_the_previous_profile(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = profile_from_dict(TINY, "prescreen-tiny")
    previous = base.model_copy(update={"seed": 7})
    (tmp_path / "records").mkdir()  # no point records in it: nothing to fit
    got = prescreen._recalibrate(base, previous, tmp_path / "records", tmp_path)
    assert got is previous
    assert "recalibration failed" in caplog.text
    assert not (tmp_path / prescreen.OVERLAY).exists()
