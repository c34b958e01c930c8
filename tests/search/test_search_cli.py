"""End to end through the CLI: a short study, resume after a killed process, infeasible spaces."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

SMALL = """
extends: {base}
name: small-study
workload:
  concurrency: [8, 32, 64]
  requests_per_point: 300
  warmup_requests: 30
  cooldown_requests: 30
search:
  trials: 6
  min_gpus: 4
  max_prefill_workers: 2
  max_decode_workers: 4
  prefill_tp: [4, 8]
  decode_tp: [4, 8]
  aggregated_tp: [4, 8]
  operating_point: target
  target_concurrency: 32
slo:
  ttft_p99_ms: 5000
  itl_p99_ms: 100
baselines: ["1P4-2D4", "2A4"]
"""


def _profile(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL.format(base=ROOT / "profiles" / "paper-70b-1p5d.yaml") + extra)
    return p


def _autotune(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "results"
    r = _autotune("run", "-p", str(_profile(tmp)), "-r", str(out), "-j", "2", "-o", "json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["recommended"]
    assert "trial 6/6" in r.stderr  # one plain line per trial when not a TTY
    return out


def test_every_result_file_parses(study_dir: Path) -> None:
    names = {p.name for p in study_dir.iterdir()}
    for f in (
        "trials.csv",
        "trials.parquet",
        "pareto.csv",
        "points.csv",
        "recommended.yaml",
        "dgd.yaml",
        "summary.json",
        "report.md",
        "profile.resolved.yaml",
        "environment.json",
        "heatmaps.csv",
        "presets.csv",
        "spike.csv",
        "spike_seeds.csv",
        "spike_effect.csv",
        "detector.csv",
        "transients.csv",
        "sensitivity.csv",
    ):
        assert f in names, f
    trials = pd.read_csv(study_dir / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 6
    assert pd.read_parquet(study_dir / "trials.parquet").shape == trials.shape
    assert len(pd.read_csv(study_dir / "pareto.csv")) >= 1
    rec = yaml.safe_load((study_dir / "recommended.yaml").read_text())
    assert rec["prediction"] is True
    assert set(rec["controller"]["presets"]) == {"below", "transition", "saturated"}
    assert rec["controller"]["theta2_ms"] > rec["controller"]["theta1_ms"] > 0
    assert rec["provenance"]["seed"] == 0 and rec["provenance"]["profile_digest"]
    assert rec["baseline_comparison"]["baseline"].startswith("1P4-2D4")
    assert {r["policy"] for r in rec["adaptive_vs_static"]} == {"static", "adaptive"}
    dgd = yaml.safe_load((study_dir / "dgd.yaml").read_text())
    assert dgd["kind"] == "DynamoGraphDeployment"
    json.loads((study_dir / "summary.json").read_text())
    json.loads((study_dir / "environment.json").read_text())
    yaml.safe_load((study_dir / "profile.resolved.yaml").read_text())
    assert (study_dir / "report.md").read_text().startswith("# autotune report")
    pngs = sorted(p.name for p in (study_dir / "plots").iterdir())
    assert {"pareto.png", "poa_ttft_vs_concurrency.png", "router_heatmaps.png", "spike_static_vs_adaptive.png"} <= set(
        pngs
    )
    spike = pd.read_csv(study_dir / "spike.csv")
    assert set(spike["policy"]) == {"static", "adaptive"} and "recommended" in set(spike["role"])
    assert {"ttft_p99_ms_lo", "ttft_p99_ms_hi", "seeds"} <= set(spike.columns)  # intervals over seeds
    assert (spike["load_x_capacity"] > 1).any()  # the ramp goes past the measured capacity
    assert set(pd.read_csv(study_dir / "detector.csv")["schedule"]) == {"spike", "calm"}
    presets = pd.read_csv(study_dir / "presets.csv")
    assert set(presets["regime"]) == {"below", "transition", "saturated"} and presets["reason"].notna().all()
    assert isinstance(rec["controller"]["keep_default"], bool) and rec["controller"]["recommendation"]
    ctl = json.loads((study_dir / "summary.json").read_text())["controller"]
    assert {"keep_default", "detector", "overload", "load_plan", "switch_transients"} <= set(ctl)
    assert "calm_false_positive_rate" in ctl["detector"] and "spike_false_negative_rate" in ctl["detector"]
    report = (study_dir / "report.md").read_text()
    assert "**Recommendation:" in report and "Detector (" in report and "Sensitivity" in report
    for p in (study_dir / "plots").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_and_report_say_how_sure(study_dir: Path) -> None:
    """The recommended figures and the baseline ratios carry intervals; report.md says how sure each claim is."""
    summary = json.loads((study_dir / "summary.json").read_text())
    assert summary["ci_level"] == 0.95
    for name in ("poa_hat", "routing_regret", "tok_s_per_gpu", "ttft_p99_ms"):
        lo, hi = summary[f"{name}_ci"]
        assert lo <= summary[name] <= hi, name
    for name in ("poa_hat", "tok_s_per_gpu", "ttft_p99"):
        lo, hi = summary[f"{name}_ratio_ci"]
        assert lo < hi and summary[f"{name}_ratio_significant"] == (lo > 1 or hi < 1), name
    rec = yaml.safe_load((study_dir / "recommended.yaml").read_text())
    assert len(rec["predicted"]["poa_hat_ci"]) == 2 and len(rec["baseline_comparison"]["baseline_poa_hat_ci"]) == 2
    assert rec["baseline_comparison"]["tok_s_per_gpu_ratio_ci"] == summary["tok_s_per_gpu_ratio_ci"]
    report = (study_dir / "report.md").read_text()
    assert "95 % CI" in report and "docs/measurement.md" in report
    assert re.search(r"PoA-hat [\d.]+ \[[\d.]+, [\d.]+\] \(routing regret [\d.]+ \[[\d.]+, [\d.]+\]", report)
    assert "tok_s_per_gpu [95 % CI]" in report  # the Pareto table shows intervals


def test_report_rerenders_from_study(study_dir: Path) -> None:
    before = json.loads((study_dir / "summary.json").read_text())
    r = _autotune("report", str(study_dir), "-o", "json")
    assert r.returncode == 0, r.stderr
    after = json.loads(r.stdout)
    assert after["recommended"] == before["recommended"]
    assert after["poa_hat"] == pytest.approx(before["poa_hat"])


def test_existing_study_needs_resume(study_dir: Path, tmp_path: Path) -> None:
    r = _autotune("run", "-p", str(study_dir / "profile.resolved.yaml"), "-r", str(study_dir))
    assert r.returncode == 2
    assert "--resume" in r.stderr and "Traceback" not in r.stderr


def test_infeasible_space_exits_3(tmp_path: Path) -> None:
    prof = _profile(tmp_path, "")
    text = prof.read_text().replace("min_gpus: 4", "min_gpus: 400")
    prof.write_text(text)
    r = _autotune("run", "-p", str(prof), "-r", str(tmp_path / "out"), "-n", "2")
    assert r.returncode == 3, r.stderr
    assert "no feasible configuration" in r.stderr and "min_gpus" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("autotune: error: no feasible configuration")
    assert "Traceback" not in r.stderr


def _spawn_run(prof: Path, out: Path) -> subprocess.Popen[str]:
    """A long study in the background, to be interrupted by the test."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "autotune", "run", "-p", str(prof), "-r", str(out), "-n", "40", "-j", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_resume_after_killed_process(tmp_path: Path) -> None:
    prof = _profile(tmp_path)
    out = tmp_path / "out"
    proc = _spawn_run(prof, out)
    journal = out / "study.journal"
    storage = None
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if journal.exists():
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
            try:
                st = optuna.load_study(study_name="autotune-small-study", storage=storage)
            except KeyError:
                continue
            done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in st.trials)
            if done >= 3:
                break
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: a trial may be left RUNNING
    proc.wait(timeout=30)
    assert done >= 3
    st = optuna.load_study(study_name="autotune-small-study", storage=storage)
    before = {t.number: t.params for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE}
    # --no-polish: the budget alone decides the count here (the pool-split pass has its own tests)
    n = str(len(before) + 2)
    r = _autotune("run", "-p", str(prof), "-r", str(out), "-n", n, "--resume", "-j", "1", "--no-polish", "-o", "json")
    assert r.returncode == 0, r.stderr
    st = optuna.load_study(study_name="autotune-small-study", storage=storage)
    assert not [t for t in st.trials if t.state == optuna.trial.TrialState.RUNNING]
    after = {t.number: t.params for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE}
    for number, params in before.items():  # finished trials are kept, not repeated
        assert after[number] == params
    failed = [t for t in st.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(after) + len(failed) == len(before) + 2  # the budget counts evaluated trials, stale ones included
    assert all("interrupted" in t.user_attrs.get("fail_reason", "") for t in failed)


def test_sigint_fails_inflight_trial_and_exits_130(tmp_path: Path) -> None:
    prof = _profile(tmp_path)
    out = tmp_path / "out"
    proc = _spawn_run(prof, out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "study.journal").exists():
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    st = optuna.load_study(study_name="autotune-small-study", storage=storage)
    assert not [t for t in st.trials if t.state == optuna.trial.TrialState.RUNNING]
