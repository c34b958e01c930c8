"""``autotune run`` / ``plan`` / ``report``: study → recommendation → controller → results directory."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from autotune.adaptive import controller_experiment
from autotune.errors import InputError
from autotune.profile import Profile
from autotune.results.directory import results_lock
from autotune.results.files import write_csv
from autotune.results.outcome import Outcome
from autotune.results.prescreen import FILE as PRESCREEN_FILE
from autotune.results.writer import write_results
from autotune.search import trials
from autotune.search.prescreen import DIR as PRESCREEN_DIR
from autotune.search.prescreen import Prescreen, prescreen_frame
from autotune.search.prescreen import run_prescreened as run_prescreened_study
from autotune.search.select import baseline_trials, select
from autotune.search.study import StudyConfig, claim_finish, load_study, run_study
from autotune.search.workers import WORKER, database_errors
from autotune.topology import parse_topology

log = logging.getLogger("autotune")
RESULTS_LOCK_WAIT_S = 600.0  # a concurrent ``report`` of the same directory holds the lock for seconds


def finish(
    profile: Profile, study: optuna.Study, out: Path, backend: dict[str, Any], prediction: bool, jobs: int = 1
) -> dict[str, Any]:
    """Select, derive the controller (its simulations on ``jobs`` processes), write the results."""
    sel = select(study)
    chosen = sel.trial
    requests = profile.search.requests_per_point
    topo = parse_topology(chosen.user_attrs[trials.TOPOLOGY])
    log.info("recommended %s; deriving controller settings by simulation", topo)
    rec = controller_experiment(
        profile,
        topo,
        trials.read_result(chosen),
        seed=profile.seed,
        requests=requests,
        sensitivity=profile.controller_eval.sensitivity,
        jobs=jobs,
    )
    bases = baseline_trials(study)
    base = None
    if bases and bases[0].user_attrs[trials.TOPOLOGY] != chosen.user_attrs[trials.TOPOLOGY]:
        # the same controller experiment on the default deployment (the paper's Exp. 3 setting)
        btopo = parse_topology(bases[0].user_attrs[trials.TOPOLOGY])
        log.info("deriving controller settings for the baseline %s", btopo)
        base = controller_experiment(
            profile, btopo, trials.read_result(bases[0]), seed=profile.seed, requests=requests, jobs=jobs
        )
    outcome = Outcome(
        profile,
        study,
        chosen,
        sel.front,
        sel.slo_met,
        bases[0] if bases else None,
        rec,
        backend,
        prediction,
        base,
        sel.ties,
    )
    return write_results(out, outcome)


def _sim_jobs(cfg: StudyConfig) -> int:
    """Processes for the controller's simulations: ``-j`` on the simulator; a live study's ``-j`` counts
    graphs on the cluster, while these simulations run here, on every core."""
    return cfg.jobs if cfg.backend == "sim" else (os.cpu_count() or 1)


def run(
    profile: Profile,
    cfg: StudyConfig,
    on_trial: Callable[..., None] | None = None,
    backend_info: dict[str, Any] | None = None,
    prediction: bool = True,
) -> dict[str, Any]:
    with database_errors():
        study = run_study(profile, cfg, on_trial)
    return finish(profile, study, cfg.results_dir, backend_info or {"backend": cfg.backend}, prediction, _sim_jobs(cfg))


def run_prescreened(
    profile: Profile,
    cfg: StudyConfig,
    screen: Prescreen,
    on_trial: Callable[..., None] | None = None,
    backend_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``run --prescreen sim:K``: the simulator proposes, the live backend confirms; the live study recommends."""
    with database_errors():
        study = run_prescreened_study(profile, cfg, screen, on_trial)
    write_csv(cfg.results_dir / PRESCREEN_FILE, prescreen_frame(study, cfg.results_dir / PRESCREEN_DIR))
    return finish(profile, study, cfg.results_dir, backend_info or {"backend": cfg.backend}, False, _sim_jobs(cfg))


def run_worker(
    profile: Profile,
    cfg: StudyConfig,
    on_trial: Callable[..., None] | None = None,
    backend_info: dict[str, Any] | None = None,
    prediction: bool = True,
    on_stale: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """One of many workers on a shared study; the first to see it done writes the recommendation, once.

    The results directory is locked only while it is written, so workers may share it (a shared
    volume) or each have their own; the other workers return who wrote it.
    """
    with database_errors():
        study = run_study(profile, cfg, on_trial, on_stale)
        writer = claim_finish(study, cfg)
    mine = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get(WORKER) == cfg.worker)
    done = {"study": study.study_name, "worker": cfg.worker, "trials_by_this_worker": mine}
    if writer != cfg.worker:
        log.info("study %s is done; its recommendation is written by worker %s", study.study_name, writer)
        return {**done, "results_written_by": writer}
    with results_lock(cfg.results_dir, wait_s=RESULTS_LOCK_WAIT_S):
        summary = finish(
            profile, study, cfg.results_dir, backend_info or {"backend": cfg.backend}, prediction, _sim_jobs(cfg)
        )
    return {**summary, **done, "results_written_by": writer}


def report(profile: Profile, cfg: StudyConfig) -> dict[str, Any]:
    """Re-render from the stored study; refuses a study that holds less than the results it would replace."""
    study = load_study(profile, cfg, create=False)
    backend = _recorded_backend(cfg.results_dir / "environment.json") or {"backend": cfg.backend}
    _refuse_partial_study(study, cfg.results_dir / "trials.csv")
    prediction = backend.get("backend", "sim") == "sim"
    return finish(profile, study, cfg.results_dir, backend, prediction, _sim_jobs(cfg))


def _recorded_backend(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        env = json.loads(path.read_text())
        backend = env["backend"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: damaged ({type(exc).__name__}: {exc}); restore it or delete it") from None
    if not isinstance(backend, dict):
        raise InputError(f"{path}: 'backend' must be a mapping, got {type(backend).__name__}")
    return backend


def _refuse_partial_study(study: optuna.Study, trials_csv: Path) -> None:
    """A study that lost finished trials (a truncated journal) must not overwrite the full results."""
    if not trials_csv.exists():
        return
    try:
        had = int((pd.read_csv(trials_csv, usecols=["state"])["state"] == "COMPLETE").sum())
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        return  # unreadable old table: nothing trustworthy to protect
    has = sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE)
    if has < had:
        raise InputError(
            f"{trials_csv.parent}: the study holds {has} finished trial(s) but the results list {had}; "
            "refusing to overwrite them with a partial study (is study.journal truncated?)"
        )
