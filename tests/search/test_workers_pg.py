"""Several ``autotune worker`` processes on one study in a real PostgreSQL (never SQLite as a stand-in).

* 4 workers finish a 40-trial study on the simulator: no trial lost, none run twice, the
  recommendation written once; ``report`` works from the storage while they run and after.
* One worker SIGKILLed mid-trial: its trial is failed with a reason by a surviving worker and run
  again once, and the study still ends with 40 finished trials.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT
from tests.pg_cluster import PgCluster, pg_bin, start_cluster

pytestmark = pytest.mark.slow

TRIALS, WORKERS = 40, 4
HEARTBEAT_S, STALE_AFTER_S = 1, 8
DEADLINE_S = 1500  # a generous bound for a busy 2-core machine; figures are printed, not asserted
SMALL = """
extends: {base}
name: shared-study
workload:
  concurrency: [8, 32, 64]
  requests_per_point: 300
  warmup_requests: 30
  cooldown_requests: 30
search:
  trials: {trials}
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
TRIAL_LINE = re.compile(r"^trial \d+/\d+ #(\d+) ", re.M)  # COMPLETE and FAIL lines (pruned ones differ)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    if pg_bin() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("PostgreSQL not installed; scripts/setup_postgres.sh must run before the tests", pytrace=False)
        pytest.skip("PostgreSQL not installed (scripts/setup_postgres.sh)")
    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """The workers a test starts; any still running at its end (a failed assert) are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    p = tmp_path / "shared.yaml"
    p.write_text(SMALL.format(base=ROOT / "profiles" / "paper-70b-1p5d.yaml", trials=TRIALS))
    return p


def _env(url: str) -> dict[str, str]:
    # the URL (with its password) travels in the environment, never on a command line
    return {**os.environ, "PYTHONPATH": str(ROOT), "AUTOTUNE_STORAGE": url}


def _worker(profile: Path, url: str, results: Path, index: int, logs: Path) -> subprocess.Popen[str]:
    args = ["worker", "-p", str(profile), "-n", str(TRIALS), "-r", str(results), "--worker-index", str(index)]
    args += ["--heartbeat", str(HEARTBEAT_S), "--stale-after", str(STALE_AFTER_S), "-o", "json"]
    return subprocess.Popen(
        [sys.executable, "-m", "autotune", *args],
        stdout=subprocess.PIPE,
        stderr=open(logs / f"w{index}.log", "w"),  # noqa: SIM115 - closed with the process
        text=True,
        env=_env(url),
        cwd=ROOT,
    )


def _study(url: str) -> optuna.Study:
    from autotune.search.workers import rdb_url

    return optuna.load_study(study_name="autotune-shared-study", storage=rdb_url(url))


def _wait(procs: list[subprocess.Popen[str]]) -> list[dict]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=DEADLINE_S)
        assert p.returncode == 0, out
        outs.append(json.loads(out))
    return outs


def _finished_lines(logs: Path) -> list[int]:
    """Trial numbers each worker printed as finished (COMPLETE or FAIL), over all workers."""
    out = []
    for f in sorted(logs.glob("w*.log")):
        out += [int(m[1]) for m in TRIAL_LINE.finditer(f.read_text())]
    return out


def _report(profile: Path, url: str, results: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune", "report", str(results), "-p", str(profile), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(url),
        cwd=ROOT,
    )


def test_four_workers_finish_a_40_trial_study_nothing_lost_nothing_twice(
    pg: PgCluster, profile: Path, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    url = pg.create_db("four")
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    t0 = time.monotonic()
    procs += [_worker(profile, url, results, i, logs) for i in range(WORKERS)]
    # report from the shared storage while the workers run (once a few trials are in)
    deadline = time.monotonic() + DEADLINE_S
    while sum(t.state == TrialState.COMPLETE for t in _safe_trials(url)) < 5:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "workers stopped early"
        time.sleep(0.5)
    live = _report(profile, url, tmp_path / "live-report")
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["recommended"]
    outs = _wait(procs)
    wall_s = time.monotonic() - t0

    trials_ = _study(url).get_trials(deepcopy=False)
    states = [t.state for t in trials_]
    assert states.count(TrialState.COMPLETE) == TRIALS
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states and TrialState.FAIL not in states
    done = _finished_lines(logs)
    assert len(done) == TRIALS and len(set(done)) == TRIALS  # each trial finished by exactly one worker, once
    by_worker = {o["worker"]: o["trials_by_this_worker"] for o in outs}
    assert sum(by_worker.values()) == TRIALS and set(by_worker) == {f"w{i}" for i in range(WORKERS)}
    writers = {o["results_written_by"] for o in outs}
    assert len(writers) == 1 and sum(o["worker"] == o["results_written_by"] for o in outs) == 1
    assert _study(url).user_attrs["finished_by"] == writers.pop()
    summary = json.loads((results / "summary.json").read_text())
    after = _report(profile, url, results)  # and from the storage after they finished: the same pick
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["recommended"] == summary["recommended"]
    assert pg.password not in "".join(f.read_text() for f in logs.glob("*.log"))
    print(
        f"\nshared study: {TRIALS} trials, {WORKERS} workers, 0 kills, lost 0, per worker {by_worker}, wall {wall_s:.0f} s"
    )


def _safe_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _study(url).get_trials(deepcopy=False)
    except KeyError:  # the first worker has not created the study yet
        return []


def test_a_worker_killed_mid_trial_is_failed_with_a_reason_and_retried_once(
    pg: PgCluster, profile: Path, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    url = pg.create_db("killed")
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    t0 = time.monotonic()
    procs += [_worker(profile, url, results, i, logs) for i in range(WORKERS)]
    victim = procs[1]
    deadline = time.monotonic() + DEADLINE_S
    killed = None
    while killed is None:
        assert time.monotonic() < deadline and victim.poll() is None, "w1 never ran a trial"
        trials_ = _safe_trials(url)
        running = [t for t in trials_ if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == "w1"]
        if running and any(t.state == TrialState.COMPLETE for t in trials_):
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed = running[0].number
        time.sleep(0.2)
    outs = _wait([p for p in procs if p is not victim])
    wall_s = time.monotonic() - t0

    trials_ = _study(url).get_trials(deepcopy=False)
    states = [t.state for t in trials_]
    assert states.count(TrialState.COMPLETE) == TRIALS
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    failed = [t for t in trials_ if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed]
    assert "worker w1 stopped sending heartbeats" in failed[0].user_attrs["fail_reason"]
    retries = [t for t in trials_ if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == failed[0].params and retries[0].user_attrs["worker"] != "w1"
    done = [n for n in _finished_lines(logs) if n != killed]
    assert len(done) == len(set(done))  # no trial finished twice
    assert sum(1 for o in outs if o["worker"] == o["results_written_by"]) == 1
    assert (results / "summary.json").exists()
    print(
        f"\nshared study with a kill: {TRIALS} finished, {WORKERS} workers, 1 kill (trial {killed}, "
        f"retried as {retries[0].number}), lost 0, wall {wall_s:.0f} s"
    )


def test_a_trial_without_heartbeats_is_adopted_then_failed_once_and_retried_once(pg: PgCluster) -> None:
    """A RUNNING trial nobody beats (a run without heartbeats, a worker killed as it asked): two workers
    race to fail it; exactly one wins, and exactly one retry is enqueued."""
    from autotune.search.workers import SharedStudy, open_rdb, rdb_url

    url = pg.create_db("adopt")
    study = optuna.create_study(study_name="s", storage=rdb_url(url), directions=["minimize", "maximize"])
    orphan = study.ask()  # no heartbeat recorded: Optuna alone would leave it RUNNING for ever
    orphan.suggest_int("x", 0, 9)
    workers = [SharedStudy(open_rdb(url, heartbeat_s=1, stale_after_s=2), study, f"w{i}", 2, None) for i in range(2)]
    try:
        failed: list[optuna.trial.FrozenTrial] = []
        deadline = time.monotonic() + 120
        while not failed:
            assert time.monotonic() < deadline, "the orphan was never failed"
            for w in workers:
                failed += w.fail_stale()
            time.sleep(0.5)
        for w in workers:  # the loser finds nothing left to fail
            failed += w.fail_stale()
    finally:
        for w in workers:
            w.close()
    assert [t.number for t in failed] == [orphan.number]
    trials_ = study.get_trials(deepcopy=False)
    assert trials_[orphan.number].state == TrialState.FAIL
    assert "stopped sending heartbeats" in trials_[orphan.number].user_attrs["fail_reason"]
    retries = [t for t in trials_ if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    assert study.ask().suggest_int("x", 0, 9) == orphan.params["x"]  # the next ask runs the retry


def test_workers_started_together_on_an_empty_database_all_open_it(pg: PgCluster) -> None:
    """Optuna creates its schema on first open; six openers at once must not collide (a duplicate type)."""
    from concurrent.futures import ThreadPoolExecutor

    from autotune.search.workers import open_rdb

    url = pg.create_db("racing")
    barrier = threading.Barrier(6)

    def open_one(_: int) -> str:
        barrier.wait(timeout=60)
        storage = open_rdb(url, heartbeat_s=5, stale_after_s=30)
        storage.remove_session()
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(open_one, range(6))) == ["ok"] * 6
