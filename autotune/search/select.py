"""Pick the one recommendation from the Pareto front (documented rule).

Rule: among feasible Pareto-optimal trials (SLO constraints met), normalise both objectives to
[0, 1] over the front — PoA-hat (lower is better) and tok/s/GPU (higher is better) — and take the
trial closest to the utopia point (best of both). Ties go to fewer GPUs, then to router settings
closest to Dynamo's defaults, then the earlier trial.
If no trial meets the SLOs, the trial with the smallest total SLO violation is recommended and
flagged ``slo_met: false``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import InfeasibleError
from autotune.search import trials


@dataclass(frozen=True)
class Selection:
    trial: FrozenTrial
    front: tuple[FrozenTrial, ...]
    slo_met: bool


def select(study: optuna.Study) -> Selection:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if all(math.isfinite(v) for v in t.values)
    ]
    if not complete:
        raise InfeasibleError("no trial completed: nothing to recommend (see the trials table for the reasons)")
    front = [t for t in study.best_trials if all(math.isfinite(v) for v in t.values)]
    if not front:
        best = min(complete, key=lambda t: (trials.violation(t), t.values[0], -t.values[1], t.number))
        return Selection(best, (), False)
    poa = [t.values[0] for t in front]
    tput = [t.values[1] for t in front]
    p_lo, p_span = min(poa), (max(poa) - min(poa)) or 1.0
    t_hi, t_span = max(tput), (max(tput) - min(tput)) or 1.0

    def key(t: FrozenTrial) -> tuple[float, int, float, int]:
        d = math.hypot((t.values[0] - p_lo) / p_span, (t_hi - t.values[1]) / t_span)
        # equal scores: the router settings closest to Dynamo's defaults (τ 0, ω 1) are the safer pick
        tau, omega = t.params.get("temperature", 0.0), t.params.get("overlap_weight", 1.0)
        return (round(d, 6), int(t.user_attrs.get(trials.GPUS, 0)), round(abs(tau) + abs(omega - 1.0), 9), t.number)

    return Selection(min(front, key=key), tuple(sorted(front, key=lambda t: t.values[0])), True)


def baseline_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if trials.is_baseline(t)]
