"""Sim-screened live studies (``autotune run --prescreen sim:K``): the simulator searches, the live backend confirms.

Each round: a simulated study of the (calibrated) profile in ``prescreen/round-N/``; its trials ranked by
the recommendation's own rule (``select_from``: best feasible first, ties inside the noise broken the
same way); the top K configurations not yet measured live (plus the baselines in round 1) enqueued into
the live study, which then runs exactly those through the normal loop (leases, signals, trials.csv);
their per-request records (``prescreen/records/``) recalibrate the simulator for the next round.
The live study alone makes the recommendation (``pipeline.finish``). docs/prescreen.md.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autotune.calibrate.overlay import apply_overlay
from autotune.calibrate.run import calibrate
from autotune.errors import AutotuneError
from autotune.profile import Profile
from autotune.results.files import write_csv, write_yaml
from autotune.search import trials
from autotune.search.config import StudyConfig
from autotune.search.loop import OnTrial
from autotune.search.select import select_from
from autotune.search.study import load_study, run_study
from autotune.search.workers import finished_count

log = logging.getLogger("autotune.search")

DIR = "prescreen"
PICKS = "picks.csv"  # per round: what the simulator proposed, with its predicted figures
OVERLAY = "overlay.yaml"  # per round: the calibration fitted from every live point so far
RECORDS = "records"
CALIBRATION_BOOTSTRAP = 20  # the overlay keeps point values only; its intervals are not used here
PREDICTED = ("tok_s_per_gpu", "ttft_p99_ms", "poa_hat")


@dataclass(frozen=True)
class Prescreen:
    """``--prescreen sim:K`` and ``--prescreen-rounds``."""

    k: int
    rounds: int


def figures(t: FrozenTrial) -> dict[str, float]:
    """A completed trial's objective figures as prescreen.csv compares them."""
    return {
        "tok_s_per_gpu": float(t.values[1]),
        "ttft_p99_ms": float(t.user_attrs.get("ttft_p99_ms", math.nan)),
        "poa_hat": float(t.values[0]),
    }


def rank(candidates: list[FrozenTrial], k: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[FrozenTrial]:
    """The ``k`` best distinct configurations not in ``exclude`` (topology strings, router included).

    Repeatedly takes what the recommendation would pick from those left, so the order is the
    recommendation's: feasible first, highest tok/s per GPU, lowest PoA-hat, ties inside the noise
    broken the seed-independent way.
    """
    seen: set[str] = set(exclude)
    pool: list[FrozenTrial] = []
    for t in sorted(candidates, key=lambda t: t.number):
        label = t.user_attrs.get(trials.TOPOLOGY, "")
        if t.state != TrialState.COMPLETE or not label or label in seen:
            continue
        if not all(math.isfinite(v) for v in t.values):
            continue
        seen.add(label)
        pool.append(t)
    out: list[FrozenTrial] = []
    while pool and len(out) < k:
        pick = select_from(pool).trial
        out.append(pick)
        pool.remove(pick)
    return out


def _quiet(t: FrozenTrial, done: int, total: int) -> None:
    log.debug("prescreen sim: %s", trials.trial_line(t, done, total))


def _sim_study(profile: Profile, cfg: StudyConfig, round_dir: Path, round_no: int) -> optuna.Study:
    """Round ``round_no``'s simulated search; its own seed, so a round does not re-propose the last one's points."""
    sim = StudyConfig(
        round_dir,
        cfg.trials,
        "sim",
        (),
        None,
        False,
        profile.seed + round_no - 1,
        os.cpu_count() or 1,
        cfg.sampler,
    )
    return run_study(profile, sim, _quiet)


def _live_labels(study: optuna.Study) -> set[str]:
    """Configurations the live study has measured or will (finished, running or queued)."""
    out = set()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.PRUNED:
            continue
        label = t.user_attrs.get(trials.TOPOLOGY) or t.user_attrs.get(trials.BASELINE)
        if label:
            out.add(str(label))
    return out


def _picks_frame(round_no: int, picks: list[tuple[str, str, FrozenTrial | None]]) -> pd.DataFrame:
    rows = []
    for role, label, t in picks:
        fig = figures(t) if t is not None else dict.fromkeys(PREDICTED, math.nan)
        rows.append({"round": round_no, "role": role, "topology": label, "sim_trial": t.number if t else -1, **fig})
    return pd.DataFrame(rows)


def _enqueue(live: optuna.Study, sim: optuna.Study, round_no: int, k: int, root: Path) -> int:
    """Enqueue this round's picks into the live study; write picks.csv; how many were enqueued."""
    sim_trials = sim.get_trials(deepcopy=False)
    picks: list[tuple[str, str, FrozenTrial | None]] = []
    if round_no == 1:  # the baselines are queued already (the study's warm start): note their predictions
        by_label = {t.user_attrs.get(trials.TOPOLOGY): t for t in sim_trials if t.state == TrialState.COMPLETE}
        for t in live.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            label = t.user_attrs.get(trials.BASELINE)
            if label:  # a baseline the simulator could not complete has no prediction (NaN)
                picks.append(("baseline", str(label), by_label.get(label)))
    measured = _live_labels(live)
    for t in rank(sim_trials, k, measured):
        live.enqueue_trial(dict(t.params))
        picks.append(("top", t.user_attrs[trials.TOPOLOGY], t))
    write_csv(root / PICKS, _picks_frame(round_no, picks))
    return len(live.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _recalibrate(base: Profile, previous: Profile, records: Path, round_dir: Path) -> Profile:
    """The base profile with the overlay fitted from every live point so far (written as overlay.yaml);
    ``previous`` (the profile this round simulated) when the fit fails."""
    try:
        cal = calibrate(base, records, boot=CALIBRATION_BOOTSTRAP, predict_points=False, hold_out_one=False)
    except AutotuneError as exc:
        log.warning("prescreen: recalibration failed (%s); the simulator keeps the previous constants", exc)
        return previous
    for p in cal.params:
        if p.status != "fitted":
            log.info("prescreen: %s not identified (%s); kept at %s", p.name, p.why, p.prior)
    write_yaml(round_dir / OVERLAY, cal.overlay, header=f"# fitted from the live points under {records}\n")
    return apply_overlay(base, cal.overlay)


def run_prescreened(
    profile: Profile, cfg: StudyConfig, screen: Prescreen, on_trial: OnTrial | None = None
) -> optuna.Study:
    """Every round's simulated search, live confirmations and recalibration; returns the live study."""
    root = cfg.results_dir / DIR
    records = root / RECORDS
    live_cfg = replace(cfg, records_dir=records, polish=False)  # live trials: the prescreen's picks only
    live = load_study(profile, live_cfg, create=True)  # a new study: its baselines are queued
    sim_profile = profile
    for round_no in range(1, screen.rounds + 1):
        round_dir = root / f"round-{round_no}"
        log.info("prescreen round %d: simulated search of %d trials", round_no, cfg.trials)
        sim = _sim_study(sim_profile, cfg, round_dir, round_no)
        queued = _enqueue(live, sim, round_no, screen.k, round_dir)
        if not queued:
            log.info("prescreen round %d: every proposed configuration was measured already; stopping", round_no)
            break
        budget = finished_count(live.get_trials(deepcopy=False)) + queued
        log.info("prescreen round %d: measuring %d configuration(s) live", round_no, queued)
        live = run_study(profile, replace(live_cfg, trials=budget, resume=True), on_trial)
        sim_profile = _recalibrate(profile, sim_profile, records, round_dir)
    return live


def prescreen_frame(study: optuna.Study, root: Path) -> pd.DataFrame:
    """One row per confirmed live trial: its round, what the simulator predicted, what was measured."""
    picks: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("round-*/" + PICKS), key=lambda p: int(p.parent.name.split("-")[1])):
        for proposed in pd.read_csv(path).to_dict("records"):
            picks.setdefault(str(proposed["topology"]), {str(k): v for k, v in proposed.items()})
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        label = str(t.user_attrs.get(trials.TOPOLOGY, ""))
        pick = picks.get(label)
        if pick is None:
            continue
        row: dict[str, Any] = {"round": pick["round"], "trial": t.number, "role": pick["role"], "topology": label}
        poa_iv, tput_iv = trials.objective_intervals(t)
        bounds = {"poa_hat": poa_iv, "tok_s_per_gpu": tput_iv}
        for name, measured in figures(t).items():
            pred = float(pick[name])
            row[f"{name}_predicted"] = pred
            row[f"{name}_measured"] = measured
            if name in bounds:  # the measured interval: is the prediction inside the noise?
                row[f"{name}_measured_lo"], row[f"{name}_measured_hi"] = bounds[name].lo, bounds[name].hi
            row[f"{name}_rel_error"] = (pred - measured) / measured if measured else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
