"""``autotune run`` / ``plan`` / ``report``: study → recommendation → controller → results directory."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from autotune.adaptive import derive_controller, spike_experiment
from autotune.metrics import PointMetrics
from autotune.profile import Profile
from autotune.results.outcome import Outcome
from autotune.results.writer import write_results
from autotune.search.evaluate import PointScore, TrialResult
from autotune.search.select import baseline_trials, select
from autotune.search.study import StudyConfig, load_study, run_study
from autotune.topology import parse_topology

log = logging.getLogger("autotune")


def trial_result(t: optuna.trial.FrozenTrial) -> TrialResult:
    """Rebuild a TrialResult from what the study stored (``report`` needs no re-run)."""
    pts = []
    fields = PointMetrics.__dataclass_fields__
    for row in json.loads(t.user_attrs["points"]):
        m = PointMetrics(**{k: row[k] for k in fields})
        by_stage = {k[4:]: v for k, v in row.items() if k.startswith("poa_") and k not in
                    ("poa_hat", "poa_window_median", "poa_window_p90")}
        pts.append(PointScore(m, row["poa_hat"], by_stage, row["poa_window_median"], row["poa_window_p90"],
                              row["regime"]))
    return TrialResult(t.user_attrs["topology"], t.user_attrs["gpus"], tuple(pts), t.user_attrs.get("knee_concurrency"),
                       t.values[0], t.values[1], t.user_attrs["output_tok_s"], t.user_attrs["ttft_p99_ms"],
                       t.user_attrs["itl_p99_ms"])


def finish(profile: Profile, study: optuna.Study, out: Path, backend: dict[str, Any], prediction: bool) -> dict[str, Any]:
    sel = select(study)
    chosen = sel.trial
    topo = parse_topology(chosen.user_attrs["topology"])
    res = trial_result(chosen)
    s = profile.search
    log.info("recommended %s; deriving controller settings by simulation", topo)
    controller, grids = derive_controller(profile, topo, res, seed=profile.seed, requests=s.requests_per_point)
    capacity = max(p.metrics.req_s for p in res.points)
    spike = spike_experiment(profile, topo, controller, capacity, seed=profile.seed)
    bases = baseline_trials(study)
    base_ctrl = base_spike = None
    if bases and bases[0].user_attrs["topology"] != chosen.user_attrs["topology"]:
        # the same controller experiment on the default deployment (the paper's Exp. 3 setting)
        btopo = parse_topology(bases[0].user_attrs["topology"])
        bres = trial_result(bases[0])
        log.info("deriving controller settings for the baseline %s", btopo)
        base_ctrl, _ = derive_controller(profile, btopo, bres, seed=profile.seed, requests=s.requests_per_point)
        bcap = max(p.metrics.req_s for p in bres.points)
        base_spike = spike_experiment(profile, btopo, base_ctrl, bcap, seed=profile.seed)
    outcome = Outcome(profile, study, chosen, sel.front, sel.slo_met, bases[0] if bases else None, controller, grids,
                      spike, backend, prediction, base_ctrl, base_spike)
    return write_results(out, outcome)


def run(profile: Profile, cfg: StudyConfig, on_trial: Callable[..., None] | None = None,
        backend_info: dict[str, Any] | None = None, prediction: bool = True) -> dict[str, Any]:
    study = run_study(profile, cfg, on_trial)
    return finish(profile, study, cfg.results_dir, backend_info or {"backend": cfg.backend}, prediction)


def report(profile: Profile, cfg: StudyConfig) -> dict[str, Any]:
    study = load_study(profile, cfg, create=False)
    env_path = cfg.results_dir / "environment.json"
    backend = json.loads(env_path.read_text()).get("backend", {}) if env_path.exists() else {"backend": cfg.backend}
    prediction = backend.get("backend", "sim") == "sim"
    return finish(profile, study, cfg.results_dir, backend, prediction)
