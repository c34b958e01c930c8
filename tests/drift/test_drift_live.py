"""`autotune drift` against a real Dynamo 1.6.1 frontend + KV router + mockers, as its own process.

A study on the simulator recommends a graph; the graph is started as a local stack; drift probes
it without touching it, twice (the second run compares with the first), then against the same graph
with 4× slower workers (the drift a scheduled job must catch) and retunes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotune.errors import EXIT_BACKEND, EXIT_BAD_INPUT, EXIT_IMPROVEMENT_AVAILABLE
from autotune.profile import load_profile
from autotune.topology import parse_topology
from tests.conftest import ROOT

PROFILE = """
extends: {base}
name: drift-small
workload:
  concurrency: [4, 8]
  requests_per_point: 200
  warmup_requests: 20
  cooldown_requests: 20
measurement:
  live_time_budget_s: 25
search:
  trials: 4
  min_gpus: 2
  max_prefill_workers: 1
  max_decode_workers: 2
  allow_aggregated: false
  prefill_tp: [4]
  decode_tp: [4]
  operating_point: target
  target_concurrency: 8
  concurrency: [4, 8]
  requests_per_point: 200
slo:
  ttft_p99_ms: 60000
  itl_p99_ms: 10000
baselines: ["1P4-1D4"]
"""


def _autotune(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def _require_dynamo() -> None:
    from autotune.dynamo import install

    if not install.python_available():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Dynamo venv missing; CI must run scripts/setup_dynamo.sh", pytrace=False)
        pytest.skip("Dynamo venv missing (run scripts/setup_dynamo.sh)")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("drift")
    prof = tmp / "drift-small.yaml"
    prof.write_text(PROFILE.format(base=ROOT / "profiles" / "paper-70b-1p5d.yaml"))
    out = tmp / "study"
    r = _autotune("run", "-p", str(prof), "-r", str(out), "-o", "json")
    assert r.returncode == 0, r.stderr
    return out


class Stack:
    def __init__(self, study: Path, speedup: float) -> None:
        from autotune.dynamo import install
        from autotune.dynamo.mocker_timing import plan_timing
        from autotune.dynamo.stack import DynamoStack, new_work_dir

        summary = json.loads((study / "summary.json").read_text())
        profile = load_profile(study / "profile.resolved.yaml")
        topo = parse_topology(summary["recommended"])
        python = install.find_python()
        work = new_work_dir("drift-test-")
        plan = plan_timing(profile, topo, work / "timing", timing="mocker", speedup=speedup)
        self.stack = DynamoStack(
            profile, topo, python=python, model_dir=install.model_dir(python), plan=plan, work_dir=work
        )
        self.stack.start()
        self.url = self.stack.base_url

    def stop(self) -> None:
        self.stack.stop()


@pytest.fixture
def stack_factory() -> Iterator[Any]:
    _require_dynamo()
    started: list[Stack] = []

    def start(study: Path, speedup: float) -> Stack:
        s = Stack(study, speedup)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _drift(study: Path, url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    r = _autotune("drift", "--study", str(study), "--frontend", url, "-n", "60", "-o", "json", *extra)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r.stderr


@pytest.mark.slow
def test_drift_probes_compares_and_catches_slower_workers(study: Path, stack_factory: Any) -> None:
    fast = stack_factory(study, 10.0)
    rc, first, err = _drift(study, fast.url, "--retune", "never", "--threshold", "1.0")
    assert rc == 0, err
    assert first["probe"]["sent"] > 0 and first["probe"]["failed"] == 0
    assert {d["against"] for d in first["figures"]} == {"prediction"}
    assert all(d["measured"] > 0 for d in first["figures"])

    rc, second, err = _drift(study, fast.url, "--retune", "never", "--threshold", "1.0")
    assert rc == 0, err
    again = [d for d in second["figures"] if d["against"] == "last_probe"]
    assert len(again) == 5
    # the same graph under the same load has not moved (by 2x: a loaded 2-core host moves TTFT by tens of %)
    assert not any(d["drifted"] for d in again), again

    fast.stop()
    slow = stack_factory(study, 2.5)  # the same graph, every step 4× slower
    rc, third, err = _drift(study, slow.url, "--retune", "always", "--trials", "4", "--threshold", "1.0")
    assert rc in (0, EXIT_IMPROVEMENT_AVAILABLE), err
    moved = {d["figure"]: d for d in third["figures"] if d["against"] == "last_probe"}
    assert moved["itl_mean_ms"]["drifted"] and moved["itl_mean_ms"]["worse"], moved
    assert third["verdict"] == "drifted"
    assert third["retune"] is not None and (rc == EXIT_IMPROVEMENT_AVAILABLE) == third["improvement_available"]
    assert (Path(third["retune"]["results_dir"]) / "summary.json").exists()

    history = (study / "drift" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["verdict"] for h in history][-1] == "drifted" and len(history) == 3
    assert (study / "drift" / "report.md").read_text().count(f"| {first['topology']} |") == 3


def test_drift_bad_input_is_one_line(study: Path, tmp_path: Path) -> None:
    r = _autotune("drift", "--study", str(tmp_path / "nothing"), "--frontend", "http://127.0.0.1:9")
    assert r.returncode == EXIT_BAD_INPUT and "summary.json" in r.stderr and "Traceback" not in r.stderr
    r = _autotune("drift", "--study", str(study), "--frontend", "http://x", "--dgd", "g")
    assert r.returncode == EXIT_BAD_INPUT and "--dgd" in r.stderr and "Traceback" not in r.stderr
    r = _autotune("drift", "--study", str(study), "--frontend", "http://127.0.0.1:9", "--history", str(tmp_path / "h"))
    assert r.returncode == EXIT_BACKEND and "does not answer" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "h" / "history.jsonl").exists()  # nothing measured, nothing recorded
    r = _autotune("drift", "--study", str(study), "--frontend", "http://127.0.0.1:9", "--traffic", str(tmp_path / "t"))
    assert r.returncode == EXIT_BAD_INPUT and "--traffic" in r.stderr and "Traceback" not in r.stderr
