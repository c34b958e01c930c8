"""``autotune run --backend dynamo-local --prescreen sim:2 --prescreen-rounds 2`` end to end on a real Dynamo 1.6.1 stack.

A tiny space (aggregated TP4/TP8 and 1P4-xD4, two router temperatures), one concurrency point of 80
short requests (tests/live/conftest.py's workload), 6 simulated trials per round. Checked: the live study
ran only the enqueued configurations (the baseline, then K per round, none twice), prescreen.csv pairs
each with its prediction, each round wrote its calibration overlay, and the recommendation is a live trial.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

from .conftest import LIVE_PROFILE, make_small_profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

K, ROUNDS = 2, 2


def test_prescreened_live_study(tmp_path: Path) -> None:
    wl = make_small_profile().resolved_dict()["workload"]
    search = {
        "operating_point": "grid",
        "aggregated_tp": [4, 8],
        "prefill_tp": [4],
        "decode_tp": [4],
        "max_prefill_workers": 1,
        "max_decode_workers": 2,
        "temperature": [0.0, 0.5],
        "overlap_weight": [1.0, 1.0],
        "router_step": 0.5,
    }
    doc = {**LIVE_PROFILE, "workload": wl, "measurement": {"adaptive": False}, "search": search, "baselines": ["2A4"]}
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "autotune", "run", "-p", str(profile), "--backend", "dynamo-local"]
    cmd += ["--prescreen", f"sim:{K}", "--prescreen-rounds", str(ROUNDS), "-n", "6", "-r", str(out), "-o", "json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1400
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    live = pd.read_csv(out / "trials.csv")
    assert len(live) == 1 + K * ROUNDS, live[["number", "state", "topology"]]  # the baseline, then K per round
    assert live["topology"].is_unique  # nothing measured twice
    done = live[live["state"] == "COMPLETE"]
    assert len(done) == len(live), live[["state", "fail_reason"]] if "fail_reason" in live else live["state"]

    picks = pd.concat(pd.read_csv(out / "prescreen" / f"round-{r}" / "picks.csv") for r in range(1, ROUNDS + 1))
    assert list(picks["role"]) == ["baseline"] + ["top"] * (K * ROUNDS)
    assert set(picks["topology"]) == set(live["topology"])  # only what the simulator proposed ran live

    table = pd.read_csv(out / "prescreen.csv")
    assert sorted(table["trial"]) == sorted(done["number"])
    assert list(table.groupby("round").size()) == [1 + K, K]
    for fig in ("tok_s_per_gpu", "ttft_p99_ms", "poa_hat"):
        assert table[f"{fig}_predicted"].gt(0).all() and table[f"{fig}_measured"].gt(0).all(), table
        assert table[f"{fig}_rel_error"].notna().all()
    for r in range(1, ROUNDS + 1):
        overlay = yaml.safe_load((out / "prescreen" / f"round-{r}" / "overlay.yaml").read_text())
        assert overlay.get("perf") or overlay.get("dynamo"), overlay  # the fit set something
    assert len(list((out / "prescreen" / "records").iterdir())) == len(done)  # one point per live trial

    summary = yaml.safe_load(proc.stdout)
    assert summary["prediction"] is False
    assert summary["recommended"] in set(done["topology"])
    assert "## Prescreen" in (out / "report.md").read_text()
