"""Many workers on one study in a shared database (PostgreSQL through Optuna's RDB storage).

Optuna's heartbeat only runs inside ``study.optimize``; the ask-and-tell loop gets the same here:

* ``Heartbeats``: a thread records a heartbeat for every trial this process has in flight.
* ``SharedStudy.fail_stale``: a RUNNING trial whose last heartbeat is older than ``stale_after_s``
  belongs to a dead worker (SIGKILL, node loss). It is failed with a reason, its parameters are
  enqueued once more (one retry; a retry that dies too is not retried again), and the caller
  sweeps its deployment. Exactly one worker wins the FAIL transition, so exactly one retries.
* ``SharedStudy.turn``: a PostgreSQL advisory lock around "count the budget, ask, prune or keep",
  so N workers never start more trials than the budget between them.
* ``SharedStudy.claim_finish``: the first worker to see the study done, and only it, writes the
  recommendation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import InputError, StorageError
from autotune.redact import redact_text
from autotune.search import trials

log = logging.getLogger("autotune.search")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat_interval

WORKER, RETRY_OF = "worker", "retry_of"  # trial user attrs: who ran it; which stale trial it repeats
FINISHED_BY = "finished_by"  # study user attr: the worker that wrote the recommendation
OnStale = Callable[[list[FrozenTrial]], None]


def worker_label(index: int | None) -> str:
    """``w3`` for a Kubernetes Indexed Job's pod 3; host and pid for a worker started by hand."""
    return f"w{index}" if index is not None else f"{socket.gethostname()}:{os.getpid()}"


def rdb_url(url: str) -> str:
    """``postgresql://`` with the installed driver (psycopg 3 or psycopg2); other URLs as given."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        return url
    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise InputError("--storage: a PostgreSQL URL needs the psycopg driver: pip install 'autotune[postgres]'")


def one_line(exc: BaseException) -> str:
    """A driver's multi-line message as one redacted line (no SQL, no "Background on this error" link)."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("(Background on this error", "[SQL:", "[parameters:"))]
    return redact_text("; ".join(keep) or type(exc).__name__)


def open_rdb(url: str, *, heartbeat_s: int, stale_after_s: int) -> RDBStorage:
    """The RDB storage with heartbeats on; ``pool_pre_ping`` survives a database restart between trials.

    Workers started together on an empty database would race to create Optuna's tables (the loser
    fails on a duplicate type); on PostgreSQL the creation runs under an advisory lock, one at a time.
    """
    try:
        with _schema_lock(url):
            return RDBStorage(
                rdb_url(url),
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=heartbeat_s,
                grace_period=stale_after_s,
            )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable URL or database
        raise InputError(f"--storage: cannot open {redact_text(url)}: {one_line(exc)}") from None


@contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Hold a session advisory lock while Optuna creates (or checks) its schema; PostgreSQL only."""
    if not rdb_url(url).startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(rdb_url(url))
    try:
        with engine.connect() as conn:
            key = _lock_key("schema")
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()


@contextmanager
def database_errors() -> Iterator[None]:
    """A database that goes away mid-study is one line (exit 5), not a traceback; told trials are kept."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as exc:
        raise StorageError(
            f"--storage: the study's database failed: {one_line(exc)}; finished trials are saved"
        ) from None


class Heartbeats:
    """One thread beating for every trial this process has in flight (trial ids, not numbers)."""

    def __init__(self, storage: RDBStorage, interval_s: float) -> None:
        self.storage, self.interval_s = storage, interval_s
        self._ids: set[int] = set()
        self.on_beat: Callable[[], None] | None = None  # also renewed with each beat: the worker's GPU leases
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autotune-heartbeat", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)  # at once: a trial is never RUNNING without one for long
        with self._lock:
            self._ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                ids = sorted(self._ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the grace period covers it
                    log.warning("heartbeat for trial id %d failed: %s", trial_id, redact_text(str(exc)))
            if self.on_beat is not None:
                self.on_beat()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def finished_count(all_trials: list[FrozenTrial]) -> int:
    """Trials that count towards the budget: evaluated ones, less stale ones a retry stands in for."""
    retried = {t.user_attrs[RETRY_OF] for t in all_trials if RETRY_OF in t.user_attrs}
    return sum(
        1
        for t in all_trials
        if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.number not in retried)
    )


def budget_used(study: optuna.Study) -> int:
    """Finished trials plus those running anywhere (this worker's and every other's)."""
    all_trials = study.get_trials(deepcopy=False)
    return finished_count(all_trials) + sum(1 for t in all_trials if t.state == TrialState.RUNNING)


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key from the study name (same in every worker)."""
    return int.from_bytes(hashlib.sha256(f"autotune:{name}".encode()).digest()[:8], "big", signed=True)


class SharedStudy:
    """This worker's handle on the shared study: heartbeats, the budget lock, stale trials, finishing."""

    def __init__(
        self, storage: RDBStorage, study: optuna.Study, worker: str, stale_after_s: float, on_stale: OnStale | None
    ) -> None:
        self.storage, self.study, self.worker = storage, study, worker
        self.stale_after_s, self.on_stale = stale_after_s, on_stale
        interval = storage.get_heartbeat_interval() or 1
        self.poll_s = float(interval)
        self.heartbeats = Heartbeats(storage, interval)
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self._key = _lock_key(study.study_name)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Serialise the budget check and the ask across workers (PostgreSQL advisory lock).

        The lock belongs to the database session: a worker killed while holding it releases it.
        Other databases get no lock (one worker at a time is then the user's promise).
        """
        engine = self.storage.engine
        if engine.dialect.name != "postgresql":
            yield
            return
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                conn.commit()

    def started(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(WORKER, self.worker)
        self.heartbeats.add(trial._trial_id)

    def stopped(self, trial: optuna.Trial) -> None:
        self.heartbeats.discard(trial._trial_id)

    def _adopt_unbeaten(self) -> None:
        """RUNNING trials that never had a heartbeat (left by a run without heartbeats, or a worker killed
        as it asked) get one now: Optuna never counts them stale, so without it they would stay RUNNING
        and the workers would wait on them for ever. A live worker beats its own within the interval."""
        from sqlalchemy import text

        query = text(
            "SELECT t.trial_id FROM trials t WHERE t.study_id = :s AND t.state = 'RUNNING' "
            "AND NOT EXISTS (SELECT 1 FROM trial_heartbeats h WHERE h.trial_id = t.trial_id)"
        )
        with self.storage.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(query, {"s": self.study_id})]
        for trial_id in ids:
            self.storage.record_heartbeat(trial_id)

    def fail_stale(self) -> list[FrozenTrial]:
        """Fail trials whose worker stopped beating, retry each once, and let the caller sweep them."""
        self._adopt_unbeaten()
        failed = []
        for trial_id in self.storage._get_stale_trial_ids(self.study_id):
            t = self.storage.get_trial(trial_id)
            who = t.user_attrs.get(WORKER, "?")
            why = (
                f"worker {who} stopped sending heartbeats for over {self.stale_after_s:.0f} s "
                f"(killed or its node lost); failed by worker {self.worker}"
            )
            if RETRY_OF in t.user_attrs:
                why += f"; not retried again (it was the retry of trial {t.user_attrs[RETRY_OF]})"
            try:
                self.storage.set_trial_user_attr(trial_id, trials.FAIL_REASON, why)
                if self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(self.storage.get_trial(trial_id))
            except UpdateFinishedTrialError:
                continue  # another worker failed it first (or its own worker finished after all)
        for t in failed:
            log.warning("trial %d: %s", t.number, t.user_attrs[trials.FAIL_REASON])
            self.retry_once(t)
        if failed and self.on_stale is not None:
            self.on_stale(failed)
        return failed

    def retry_once(self, t: FrozenTrial) -> None:
        """Enqueue a lost trial's parameters for whichever worker asks next, unless it was a retry itself."""
        if RETRY_OF not in t.user_attrs:
            keep = {k: t.user_attrs[k] for k in (trials.BASELINE,) if k in t.user_attrs}
            self.study.enqueue_trial(t.params, user_attrs={**keep, RETRY_OF: t.number})

    def wait_for_others(self) -> bool:
        """Nothing left to ask: wait while other workers' trials run; False once none does.

        A dead worker's trial turns stale here and is retried, which gives this worker work again.
        """
        if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return False
        time.sleep(self.poll_s)
        self.fail_stale()
        return True

    def claim_finish(self) -> str:
        """Claim the right to write the recommendation; returns the worker that holds it (maybe us)."""
        with self.turn():
            attrs: dict[str, Any] = self.storage.get_study_user_attrs(self.study_id)
            if FINISHED_BY in attrs:
                return str(attrs[FINISHED_BY])
            self.storage.set_study_user_attr(self.study_id, FINISHED_BY, self.worker)
            return self.worker

    def close(self) -> None:
        self.heartbeats.close()
