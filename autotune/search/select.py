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
   indistinguishable from it, the lowest PoA-hat; among those indistinguishable from that, fewer
   GPUs, then router settings closest to the defaults, then the earlier trial. No normalisation by
   the front's span, so a spread within noise cannot become a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import InfeasibleError
from autotune.intervals import Interval, differ
from autotune.search import trials


@dataclass(frozen=True)
class Selection:
    trial: FrozenTrial
    front: tuple[FrozenTrial, ...]
    slo_met: bool


def _router_distance(t: FrozenTrial) -> float:
    """How far a trial's router settings are from Dynamo's defaults (τ 0, ω 1): the safer pick on a tie."""
    tau, omega = t.params.get("temperature", 0.0), t.params.get("overlap_weight", 1.0)
    return round(abs(tau) + abs(omega - 1.0), 9)


def _better(a: Interval, b: Interval, *, maximize: bool) -> bool:
    return differ(a, b) and (a.value > b.value if maximize else a.value < b.value)


def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    """``a`` is better than ``b`` beyond the noise in one objective and not worse beyond it in the other."""
    (pa, ta), (pb, tb) = trials.objective_intervals(a), trials.objective_intervals(b)
    better = _better(pa, pb, maximize=False) or _better(ta, tb, maximize=True)
    worse = _better(pb, pa, maximize=False) or _better(tb, ta, maximize=True)
    return better and not worse


def indistinguishable(a: FrozenTrial, b: FrozenTrial) -> bool:
    (pa, ta), (pb, tb) = trials.objective_intervals(a), trials.objective_intervals(b)
    return not differ(pa, pb) and not differ(ta, tb)


def significant_front(candidates: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in candidates if not any(dominates(o, t) for o in candidates if o is not t)]


def collapse_near_duplicates(front: list[FrozenTrial]) -> list[FrozenTrial]:
    """One row per shape and distinguishable outcome: the router settings closest to the defaults win."""
    kept: list[FrozenTrial] = []
    for t in sorted(front, key=lambda t: (_router_distance(t), t.number)):
        shape = str(t.user_attrs.get(trials.TOPOLOGY, "")).split("@")[0]
        twins = [k for k in kept if str(k.user_attrs.get(trials.TOPOLOGY, "")).split("@")[0] == shape]
        if not any(indistinguishable(t, k) for k in twins):
            kept.append(t)
    return sorted(kept, key=lambda t: t.number)


def recommend(front: list[FrozenTrial]) -> FrozenTrial:
    tput_best = max(front, key=lambda t: t.values[1])
    best_tput_iv = trials.objective_intervals(tput_best)[1]
    tier = [t for t in front if not _better(best_tput_iv, trials.objective_intervals(t)[1], maximize=True)]
    poa_best = min(tier, key=lambda t: t.values[0])
    best_poa_iv = trials.objective_intervals(poa_best)[0]
    tier = [t for t in tier if not _better(best_poa_iv, trials.objective_intervals(t)[0], maximize=False)]
    return min(tier, key=lambda t: (int(t.user_attrs.get(trials.GPUS, 0)), _router_distance(t), t.number))


def select(study: optuna.Study) -> Selection:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if all(math.isfinite(v) for v in t.values)
    ]
    if not complete:
        raise InfeasibleError("no trial completed: nothing to recommend (see the trials table for the reasons)")
    feasible = [t for t in complete if trials.violation(t) == 0]
    if not feasible:
        best = min(complete, key=lambda t: (trials.violation(t), t.values[0], -t.values[1], t.number))
        return Selection(best, (), False)
    front = collapse_near_duplicates(significant_front(feasible))
    return Selection(recommend(front), tuple(sorted(front, key=lambda t: t.values[0])), True)


def baseline_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trials.is_baseline(t)]
