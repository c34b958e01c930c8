"""The recommendation rule (``search/select.py``) on small in-memory studies.

Among the trials that meet the SLOs, the front holds those no other trial significantly dominates;
the highest tok/s per GPU wins, a tie inside the noise goes to the lower PoA-hat, then to fewer GPUs,
then to router settings closest to Dynamo's defaults (τ 0, ω 1), then the earlier trial. With no trial
meeting the SLOs, the least total violation wins and the selection says ``slo_met`` False.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution

from autotune.errors import InfeasibleError
from autotune.search import trials
from autotune.search.select import select

optuna.logging.set_verbosity(optuna.logging.WARNING)

ROUTER = {"temperature": FloatDistribution(0.0, 1.0), "overlap_weight": FloatDistribution(0.0, 2.0)}


def _study() -> optuna.Study:
    return optuna.create_study(directions=list(trials.DIRECTIONS))


def _add(
    study: optuna.Study,
    poa: float,
    tput: float,
    *,
    gpus: int = 8,
    cons: dict[str, float] | None = None,
    tau: float = 0.0,
    omega: float = 1.0,
    rel: float = 0.02,
    shape: str = "",
    regret: float | None = 1.0,
) -> int:
    """One completed trial whose objectives carry ±``rel`` intervals; returns its number.

    ``regret`` None: a legacy trial (recorded before the measured PoA-hat; its first value is the regret).
    """
    ci = {
        "poa_objective_lo": poa * (1 - rel),
        "poa_objective_hi": poa * (1 + rel),
        "tok_s_per_gpu_lo": tput * (1 - rel),
        "tok_s_per_gpu_hi": tput * (1 + rel),
    }
    if regret is not None:
        ci.update(routing_regret=regret, routing_regret_lo=regret * (1 - rel), routing_regret_hi=regret * (1 + rel))
    study.add_trial(
        optuna.trial.create_trial(
            values=[poa, tput],
            params={"temperature": tau, "overlap_weight": omega},
            distributions=dict(ROUTER),
            user_attrs={trials.GPUS: gpus, trials.TOPOLOGY: f"{shape or gpus}@tau={tau},omega={omega}", **ci},
            constraints=cons if cons is not None else {"ttft_p99": -0.1, "itl_p99": -0.2},
        )
    )
    return study.trials[-1].number


def test_highest_throughput_wins_beyond_the_noise() -> None:
    s = _study()
    a = _add(s, 1.0, 100.0)  # best PoA-hat, poor throughput
    b = _add(s, 1.2, 300.0)
    c = _add(s, 2.0, 320.0)  # 320 ± 2 % does not overlap 300 ± 2 %: more throughput, significantly
    _add(s, 1.5, 200.0)  # dominated by b
    _add(s, 0.5, 1000.0, cons={"ttft_p99": 0.5, "itl_p99": -0.2})  # dominates all, but misses the TTFT SLO
    sel = select(s)
    assert sel.slo_met is True
    assert sel.trial.number == c
    assert [t.number for t in sel.front] == [a, b, c]  # sorted by PoA-hat, the infeasible one left out


def test_a_throughput_lead_inside_the_noise_goes_to_the_lower_poa_hat() -> None:
    s = _study()
    b = _add(s, 1.2, 300.0, regret=1.1)
    _add(s, 2.0, 305.0, regret=1.0)  # 305 ± 2 % overlaps 300 ± 2 %: no real lead; the regret is not compared
    assert select(s).trial.number == b


def test_a_study_with_legacy_trials_compares_on_the_routing_regret() -> None:
    """A resumed study mixing trials from before the measured PoA-hat: every trial is compared on the
    routing regret (the only figure all of them carry), never a regret against a PoA-hat."""
    s = _study()
    legacy = _add(s, 1.0, 300.0, regret=None)  # its first value is a routing regret
    new = _add(s, 20.0, 302.0, regret=1.3)  # PoA-hat 20, regret 1.3: worse routing than the legacy trial
    sel = select(s)
    assert sel.trial.number == legacy
    assert [t.number for t in sel.front] == [legacy]  # regret 1.0 vs 1.3 beyond the noise, throughput tied
    assert trials.is_legacy(sel.trial) and not trials.is_legacy(s.trials[new])


def test_router_variants_with_no_real_effect_are_one_row() -> None:
    """Same shape, indistinguishable outcomes: one row, the router settings closest to the defaults."""
    s = _study()
    default = _add(s, 1.0, 300.0, shape="1P4-2D4")
    _add(s, 1.001, 300.3, shape="1P4-2D4", tau=0.05, omega=0.95)
    _add(s, 0.999, 299.8, shape="1P4-2D4", tau=0.7, omega=0.0)
    sel = select(s)
    assert [t.number for t in sel.front] == [default] and sel.trial.number == default


def test_no_significant_dominance_without_intervals() -> None:
    """Trials that carry no intervals (noise unknown) never dominate each other: no decision on noise."""
    s = _study()
    for poa, tput in ((1.0, 100.0), (1.2, 300.0)):
        s.add_trial(
            optuna.trial.create_trial(
                values=[poa, tput],
                params={"temperature": 0.0, "overlap_weight": 1.0},
                distributions=dict(ROUTER),
                user_attrs={trials.GPUS: 8, trials.TOPOLOGY: f"{tput}"},
                constraints={"ttft_p99": -0.1},
            )
        )
    assert len(select(s).front) == 2


def test_equal_scores_go_to_fewer_gpus_before_router_defaults() -> None:
    s = _study()
    _add(s, 1.1, 200.0, gpus=16)  # earlier, Dynamo-default router, but more GPUs
    few = _add(s, 1.1, 200.0, gpus=8, tau=0.8, omega=0.1)
    assert select(s).trial.number == few


def test_equal_scores_and_gpus_go_to_router_closest_to_dynamo_defaults() -> None:
    s = _study()
    _add(s, 1.1, 200.0, tau=0.6, omega=1.0)  # |τ| + |ω−1| = 0.6
    _add(s, 1.1, 200.0, tau=0.0, omega=0.5)  # 0.5
    near = _add(s, 1.1, 200.0, tau=0.1, omega=0.9)  # 0.2
    _add(s, 1.1, 200.0, tau=0.0, omega=1.3)  # 0.3
    assert select(s).trial.number == near


def test_full_tie_goes_to_the_earlier_trial() -> None:
    s = _study()
    first = _add(s, 1.1, 200.0, tau=0.2, omega=1.0)
    _add(s, 1.1, 200.0, tau=0.0, omega=0.8)
    assert select(s).trial.number == first


def _told(study: optuna.Study, poa: float, tput: float, cons: dict[str, float], gpus: int = 8) -> int:
    """A trial as the search writes it: ask, constraints by name, tell."""
    t = study.ask()
    t.set_user_attr(trials.GPUS, gpus)
    for name, value in cons.items():
        t.set_constraint(name, value)
    study.tell(t, [poa, tput])
    return t.number


def test_no_trial_meets_the_slo_least_total_violation_wins() -> None:
    s = _study()
    _told(s, 1.0, 900.0, {"ttft_p99": 0.5, "itl_p99": 0.0})  # total 0.5, best objectives
    _told(s, 1.1, 800.0, {"ttft_p99": 0.2, "itl_p99": 0.2})  # total 0.4
    least = _told(s, 1.4, 300.0, {"ttft_p99": -0.5, "itl_p99": 0.3})  # total 0.3: a met SLO does not offset
    _told(s, 1.2, 700.0, {"ttft_p99": 0.35, "itl_p99": -0.9})  # total 0.35
    assert trials.violation(s.trials[least]) == pytest.approx(0.3)
    sel = select(s)
    assert sel.slo_met is False
    assert sel.trial.number == least
    assert sel.front == ()


def test_no_trial_meets_the_slo_equal_violation_goes_to_better_poa() -> None:
    s = _study()
    _add(s, 1.3, 900.0, cons={"ttft_p99": 0.2})
    better = _add(s, 1.1, 100.0, cons={"ttft_p99": 0.2})
    sel = select(s)
    assert (sel.trial.number, sel.slo_met) == (better, False)


def test_failed_trials_and_infinite_objectives_are_ignored() -> None:
    s = _study()
    ok = _add(s, 1.2, 300.0)
    _add(s, float("inf"), 5000.0)  # complete, but PoA-hat could not be priced
    t = s.ask()
    s.tell(t, state=optuna.trial.TrialState.FAIL)
    sel = select(s)
    assert sel.trial.number == ok
    assert [t.number for t in sel.front] == [ok]


def test_nothing_completed_is_an_infeasible_error() -> None:
    s = _study()
    t = s.ask()
    s.tell(t, state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(InfeasibleError, match="no trial completed"):
        select(s)


def test_a_tie_between_shapes_is_broken_by_what_no_seed_changes_and_reported() -> None:
    """Same GPUs, objectives inside each other's noise: the pick must not depend on trial order or router
    settings (both vary with the study seed): fewer workers first, then the shape's name."""
    for order in ((0, 1, 2), (2, 1, 0)):
        s = _study()
        candidates = [
            dict(poa=1.00, tput=300.0, shape="1P4-2D4", tau=0.5, omega=0.5),  # 3 workers
            dict(poa=1.01, tput=301.0, shape="2P2-2D4", tau=0.0, omega=1.0),  # 4 workers, defaults
            dict(poa=0.99, tput=302.0, shape="3A4", tau=0.0, omega=1.0),  # 3 workers, defaults, name after
        ]
        for i in order:
            _add(s, gpus=12, **candidates[i])  # type: ignore[arg-type]
        sel = select(s)
        assert str(sel.trial.user_attrs[trials.TOPOLOGY]).startswith("1P4-2D4@")
        assert sel.ties == ("2P2-2D4", "3A4")
