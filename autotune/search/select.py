"""Pick the one recommendation from a study, deciding only on differences larger than the noise.

Every completed trial carries its two objectives with 95 % intervals (PoA-hat, lower is better;
output tok/s per GPU, higher is better). Two figures differ only when their intervals do not
overlap (``intervals.differ``); nothing is ever decided on a difference inside that.

1. Feasible: the trials that meet the SLOs. If none does, the least-violating trial is
   recommended and flagged ``slo_met: false``.
2. Front: the feasible trials that no other feasible trial *significantly* dominates (better
   beyond the noise in one objective, not worse beyond it in the other).
3. Near-duplicates collapse: trials of one shape whose objectives are indistinguishable keep one
   row, the one whose router settings are closest to Dynamo's defaults (τ 0, ω 1).
4. Recommendation, lexicographic with ties inside the noise: the highest tok/s per GPU; among those
   indistinguishable from it, the lowest PoA-hat; among those indistinguishable from that, a tie
   resolved by what a study seed cannot change: fewer GPUs, then fewer workers, then the shape's
   name, and only within one shape the router settings closest to the defaults and the earlier
   trial. No normalisation by the front's span, so a spread within noise cannot become a decision;
   the shapes tied with the pick (``ties``) are reported with it.

"PoA-hat" here is the headline (measured-latency) estimator, which the search minimises. A study
that also holds trials recorded before it existed (``trials.is_legacy``) is compared on the routing
regret instead, the one figure every trial of it carries: two scales are never mixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import InfeasibleError, InputError
from autotune.intervals import Interval, differ
from autotune.search import trials
from autotune.topology import parse_topology


@dataclass(frozen=True)
class Selection:
    trial: FrozenTrial
    front: tuple[FrozenTrial, ...]
    slo_met: bool
    ties: tuple[str, ...] = ()  # other shapes indistinguishable from the pick in both objectives


def shape(t: FrozenTrial) -> str:
    """A trial's topology without its router settings (``1P4-2D4``)."""
    return str(t.user_attrs.get(trials.TOPOLOGY, "")).split("@")[0]


def _tie_break(t: FrozenTrial) -> tuple[int, int, str, float, int]:
    """Order among trials tied within noise: seed-independent for different shapes (GPUs, workers, name)."""
    name = shape(t)
    try:
        workers = len(parse_topology(name).worker_tps())
    except InputError:  # not a shape this version parses (a hand-made study): ordered by name alone
        workers = 0
    return int(t.user_attrs.get(trials.GPUS, 0)), workers, name, _router_distance(t), t.number


def _router_distance(t: FrozenTrial) -> float:
    """How far a trial's router settings are from Dynamo's defaults (τ 0, ω 1): the safer pick on a tie."""
    tau, omega = t.params.get("temperature", 0.0), t.params.get("overlap_weight", 1.0)
    return round(abs(tau) + abs(omega - 1.0), 9)


def _better(a: Interval, b: Interval, *, maximize: bool) -> bool:
    return differ(a, b) and (a.value > b.value if maximize else a.value < b.value)


def _objectives(t: FrozenTrial, legacy: bool) -> tuple[Interval, Interval]:
    """(PoA figure, tok/s per GPU): PoA-hat, or the routing regret when the study holds legacy trials."""
    poa, tput = trials.objective_intervals(t)
    return (trials.regret_interval(t) if legacy else poa), tput


def dominates(a: FrozenTrial, b: FrozenTrial, legacy: bool = False) -> bool:
    """``a`` is better than ``b`` beyond the noise in one objective and not worse beyond it in the other."""
    (pa, ta), (pb, tb) = _objectives(a, legacy), _objectives(b, legacy)
    better = _better(pa, pb, maximize=False) or _better(ta, tb, maximize=True)
    worse = _better(pb, pa, maximize=False) or _better(tb, ta, maximize=True)
    return better and not worse


def indistinguishable(a: FrozenTrial, b: FrozenTrial, legacy: bool = False) -> bool:
    (pa, ta), (pb, tb) = _objectives(a, legacy), _objectives(b, legacy)
    return not differ(pa, pb) and not differ(ta, tb)


def significant_front(candidates: list[FrozenTrial], legacy: bool = False) -> list[FrozenTrial]:
    return [t for t in candidates if not any(dominates(o, t, legacy) for o in candidates if o is not t)]


def collapse_near_duplicates(front: list[FrozenTrial], legacy: bool = False) -> list[FrozenTrial]:
    """One row per shape and distinguishable outcome: the router settings closest to the defaults win."""
    kept: list[FrozenTrial] = []
    for t in sorted(front, key=lambda t: (_router_distance(t), t.number)):
        twins = [k for k in kept if shape(k) == shape(t)]
        if not any(indistinguishable(t, k, legacy) for k in twins):
            kept.append(t)
    return sorted(kept, key=lambda t: t.number)


def recommend(front: list[FrozenTrial], legacy: bool = False) -> FrozenTrial:
    tput_best = max(front, key=lambda t: t.values[1])
    best_tput_iv = trials.objective_intervals(tput_best)[1]
    tier = [t for t in front if not _better(best_tput_iv, trials.objective_intervals(t)[1], maximize=True)]
    poa_best = min(tier, key=lambda t: _objectives(t, legacy)[0].value)
    best_poa_iv = _objectives(poa_best, legacy)[0]
    tier = [t for t in tier if not _better(best_poa_iv, _objectives(t, legacy)[0], maximize=False)]
    return min(tier, key=_tie_break)


def ties(chosen: FrozenTrial, front: tuple[FrozenTrial, ...], legacy: bool = False) -> list[str]:
    """Shapes on the front indistinguishable from the recommendation in both objectives (the tie it broke)."""
    return sorted({shape(t) for t in front if shape(t) != shape(chosen) and indistinguishable(t, chosen, legacy)})


def select(study: optuna.Study) -> Selection:
    return select_from(list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))


def select_from(candidates: list[FrozenTrial]) -> Selection:
    """``select`` over any set of completed trials (the prescreen ranks a simulated study with it)."""
    complete = [t for t in candidates if all(math.isfinite(v) for v in t.values)]
    if not complete:
        raise InfeasibleError("no trial completed: nothing to recommend (see the trials table for the reasons)")
    legacy = any(trials.is_legacy(t) for t in complete)

    def poa(t: FrozenTrial) -> float:
        return _objectives(t, legacy)[0].value

    feasible = [t for t in complete if trials.violation(t) == 0]
    if not feasible:
        best = min(complete, key=lambda t: (trials.violation(t), poa(t), -t.values[1], t.number))
        return Selection(best, (), False)
    front = collapse_near_duplicates(significant_front(feasible, legacy), legacy)
    pick = recommend(front, legacy)
    return Selection(pick, tuple(sorted(front, key=poa)), True, tuple(ties(pick, tuple(front), legacy)))


def baseline_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trials.is_baseline(t)]
