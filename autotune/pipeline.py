"""``autotune run`` / ``plan`` / ``report``: study → recommendation → controller → results directory."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from autotune.adaptive import controller_experiment
from autotune.profile import Profile
from autotune.results.outcome import Outcome
from autotune.results.writer import write_results
from autotune.search import trials
from autotune.search.select import baseline_trials, select
from autotune.search.study import StudyConfig, load_study, run_study
from autotune.topology import parse_topology

log = logging.getLogger("autotune")


def finish(
    profile: Profile, study: optuna.Study, out: Path, backend: dict[str, Any], prediction: bool
) -> dict[str, Any]:
    sel = select(study)
    chosen = sel.trial
    requests = profile.search.requests_per_point
    topo = parse_topology(chosen.user_attrs[trials.TOPOLOGY])
    log.info("recommended %s; deriving controller settings by simulation", topo)
    rec = controller_experiment(profile, topo, trials.read_result(chosen), seed=profile.seed, requests=requests)
    bases = baseline_trials(study)
    base = None
    if bases and bases[0].user_attrs[trials.TOPOLOGY] != chosen.user_attrs[trials.TOPOLOGY]:
        # the same controller experiment on the default deployment (the paper's Exp. 3 setting)
        btopo = parse_topology(bases[0].user_attrs[trials.TOPOLOGY])
        log.info("deriving controller settings for the baseline %s", btopo)
        base = controller_experiment(profile, btopo, trials.read_result(bases[0]), seed=profile.seed, requests=requests)
    outcome = Outcome(
        profile,
        study,
        chosen,
        sel.front,
        sel.slo_met,
        bases[0] if bases else None,
        rec.settings,
        rec.grids,
        rec.spike,
        backend,
        prediction,
        base.settings if base else None,
        base.spike if base else None,
    )
    return write_results(out, outcome)


def run(
    profile: Profile,
    cfg: StudyConfig,
    on_trial: Callable[..., None] | None = None,
    backend_info: dict[str, Any] | None = None,
    prediction: bool = True,
) -> dict[str, Any]:
    study = run_study(profile, cfg, on_trial)
    return finish(profile, study, cfg.results_dir, backend_info or {"backend": cfg.backend}, prediction)


def report(profile: Profile, cfg: StudyConfig) -> dict[str, Any]:
    study = load_study(profile, cfg, create=False)
    env_path = cfg.results_dir / "environment.json"
    backend = json.loads(env_path.read_text()).get("backend", {}) if env_path.exists() else {"backend": cfg.backend}
    prediction = backend.get("backend", "sim") == "sim"
    return finish(profile, study, cfg.results_dir, backend, prediction)
