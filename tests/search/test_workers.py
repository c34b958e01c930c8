"""The worker mode's bookkeeping without a database: the budget, driver URLs, flags and errors.

The shared-study behaviour itself runs against a real PostgreSQL in test_workers_pg.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from autotune.errors import InputError
from autotune.search.workers import RETRY_OF, finished_count, rdb_url, worker_label
from tests.conftest import ROOT


def _t(number: int, state: TrialState, **attrs: object) -> optuna.trial.FrozenTrial:
    t = create_trial(
        state=state,
        values=[1.0, 2.0] if state == TrialState.COMPLETE else None,
        params={"x": 1},
        distributions={"x": IntDistribution(0, 2)},
        user_attrs=dict(attrs),
    )
    t.number = number
    return t


def test_a_retried_stale_trial_does_not_count_twice_against_the_budget() -> None:
    trials = [
        _t(0, TrialState.COMPLETE),
        _t(1, TrialState.FAIL),  # a dead worker's trial ...
        _t(2, TrialState.COMPLETE, **{RETRY_OF: 1}),  # ... stands in its retry
        _t(3, TrialState.FAIL),  # failed for its own reasons: counts
        _t(4, TrialState.PRUNED),
        _t(5, TrialState.RUNNING),
        _t(6, TrialState.WAITING),
    ]
    assert finished_count(trials) == 3
    assert finished_count(trials[:2]) == 2  # before the retry exists the failure counts


def test_postgresql_urls_get_the_installed_driver() -> None:
    assert rdb_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert rdb_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert rdb_url("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"  # an explicit driver is kept
    assert rdb_url("mysql+pymysql://h/db") == "mysql+pymysql://h/db"


def test_worker_labels() -> None:
    assert worker_label(3) == "w3"
    assert worker_label(None).endswith(f":{os.getpid()}")


def _autotune(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("AUTOTUNE_STORAGE", "JOB_COMPLETION_INDEX")}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**full, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {}, "--storage: a worker needs"),
        (("--heartbeat", "30", "--stale-after", "30"), {"AUTOTUNE_STORAGE": "postgresql://h/db"}, "--stale-after"),
        ((), {"AUTOTUNE_STORAGE": "postgresql://bob:hunter2@127.0.0.1:1/optuna"}, "--storage: cannot open"),
    ],
)
def test_worker_bad_input_is_one_line_and_hides_the_password(
    tmp_path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    r = _autotune("worker", "-p", "paper-70b-1p2d", "-r", str(tmp_path / "r"), *args, **env)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "hunter2" not in r.stderr


def test_rdb_url_without_a_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"autotune\[postgres\]"):
        rdb_url("postgresql://h/db")
