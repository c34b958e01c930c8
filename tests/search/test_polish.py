"""After the budget, the untried shapes on the recommended GPU count run once each (autotune.search.polish)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from optuna.trial import TrialState

from autotune.profile import load_profile
from autotune.search import trials
from autotune.search.config import StudyConfig, polish_for
from autotune.search.polish import SHARE, enqueue_splits, pool_splits, split_variants
from autotune.search.select import select, shape
from autotune.search.study import run_study
from autotune.topology import parse_topology
from tests.search.test_result_reuse import _profile as tiny_profile


def _profile() -> Any:
    """A tiny disaggregated space (TP 2 or 4 per pool) with shapes a 4-trial study leaves untried."""
    return tiny_profile(
        trials=4,
        allow_aggregated=False,
        prefill_tp=[2, 4],
        decode_tp=[2, 4],
        max_prefill_workers=2,
        max_decode_workers=4,
    )


def test_pool_splits_keep_the_gpus_within_the_space() -> None:
    assert pool_splits(8, [1, 2, 4, 8], 12) == [(8, 1), (4, 2), (2, 4), (1, 8)]
    assert pool_splits(8, [1, 2, 4, 8], 6) == [(4, 2), (2, 4), (1, 8)]  # 8 workers of TP1 exceed the limit
    assert pool_splits(6, [4, 8], 6) == []


def test_split_variants_are_every_other_shape_on_the_same_gpus() -> None:
    prof = load_profile("paper-70b-1p5d")
    lead = parse_topology("4P1-8D1@tau=0.1,omega=0.8")
    got = [t.shape() for t in split_variants(lead, prof)]
    assert len(got) == len(set(got)) and "4P1-8D1" not in got
    assert {"4P1-1D8", "2P2-4D2", "6P1-3D2", "1P8-1D4", "5P2-1D2", "3A4", "6A2"} <= set(got)
    assert "7P1-5D1" not in got and "12A1" not in got  # 7 prefill workers > 6; TP1 not among aggregated_tp
    # every split (p prefill GPUs, 12 - p decode GPUs) times its TP choices, plus 3A4 and 6A2, less the leader
    s = prof.search
    count = sum(
        len(pool_splits(p, list(s.prefill_tp), s.max_prefill_workers))
        * len(pool_splits(12 - p, list(s.decode_tp), s.max_decode_workers))
        for p in range(1, 12)
    )
    assert len(got) == count + 2 - 1
    assert all(t.router == lead.router and t.gpus == 12 for t in split_variants(lead, prof))
    assert "4P1-8D1" in [t.shape() for t in split_variants(parse_topology("3A4"), prof)]


def _prefill_gpus(shape_name: str) -> int:
    t = parse_topology(shape_name)
    return t.prefill_workers * t.prefill_tp if t.disaggregated else 0


def test_polish_runs_the_nearest_untried_shapes_within_its_share_and_is_idempotent(tmp_path: Any) -> None:
    prof = _profile()
    cfg = StudyConfig(tmp_path, 4, "sim", seed=prof.seed, jobs=1)
    study = run_study(prof, cfg)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and not any(trials.POLISH_OF in t.user_attrs for t in done)  # off by default
    lead = parse_topology(select(study).trial.user_attrs[trials.TOPOLOGY])
    tried = {shape(t) for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    untried = {t.shape() for t in split_variants(lead, prof)} - tried
    room = int(4 * SHARE)  # 1 of a budget of 4
    assert len(untried) > room, "the fixture must leave more untried shapes than the pass may run"

    again = run_study(prof, replace(cfg, resume=True, polish=True))
    polished = [t for t in again.get_trials() if trials.POLISH_OF in t.user_attrs]
    assert len(polished) == room and {shape(t) for t in polished} <= untried
    assert all(t.state == TrialState.COMPLETE for t in polished)
    assert all(t.user_attrs[trials.POLISH_OF] == lead.to_string() for t in polished)
    assert all(parse_topology(t.user_attrs[trials.TOPOLOGY]).router == lead.router for t in polished)
    # nearest first: no untried shape left behind is closer to the leader's prefill GPUs than one that ran
    far = max(abs(_prefill_gpus(shape(t)) - _prefill_gpus(lead.shape())) for t in polished)
    assert all(
        abs(_prefill_gpus(s) - _prefill_gpus(lead.shape())) >= far for s in untried - {shape(t) for t in polished}
    )
    # the recommendation is taken over every trial, the polished ones included
    assert select(again).trial.state == TrialState.COMPLETE

    n = len(again.get_trials())
    third = run_study(prof, replace(cfg, resume=True, polish=True))
    assert len(third.get_trials()) == n  # the pass has used its share: a resume adds no trial


def test_enqueued_splits_count_as_tried(tmp_path: Any) -> None:
    prof = _profile()
    study = run_study(prof, StudyConfig(tmp_path, 4, "sim", seed=prof.seed, jobs=1))
    first, left = enqueue_splits(study, prof, budget=400)
    assert first and left == 0
    assert enqueue_splits(study, prof, budget=400) == ([], 0)  # waiting in the queue: not enqueued twice
    waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert {t.user_attrs[trials.TOPOLOGY] for t in waiting} == {t.to_string() for t in first}
    # as an interrupted pass leaves them: a resume runs every one, and no other
    again = run_study(prof, StudyConfig(tmp_path, 4, "sim", seed=prof.seed, jobs=1, resume=True, polish=True))
    ran = [t for t in again.get_trials() if trials.POLISH_OF in t.user_attrs]
    assert sorted(t.number for t in ran) == sorted(t.number for t in waiting)
    assert all(t.state == TrialState.COMPLETE for t in ran)


def test_a_small_budget_polishes_at_least_one_shape_and_says_how_many_it_left(tmp_path: Any) -> None:
    prof = _profile()
    study = run_study(prof, StudyConfig(tmp_path, 2, "sim", seed=prof.seed, jobs=1))
    added, left = enqueue_splits(study, prof, budget=2)
    assert len(added) == 1 and left >= 1  # a quarter of 2 rounds to 0: one all the same


def test_polish_default_is_on_for_the_simulator_only() -> None:
    assert polish_for("sim", None) is True
    assert polish_for("k8s", None) is False and polish_for("dynamo-local", None) is False
    assert polish_for("k8s", True) is True and polish_for("sim", False) is False
