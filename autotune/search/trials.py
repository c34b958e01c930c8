"""The one schema of a stored trial: written to Optuna once, read back everywhere from here.

A finished trial's ``TrialResult`` lives in the trial's user attributes (scalars for the trials
table, the points as one JSON document) and its SLO margins as Optuna constraints. ``read_result``
rebuilds the identical ``TrialResult``, so ``report`` needs no re-run, and the trials and points
tables, the per-trial log line and the recommendation all read the same fields the same way.

Legacy trials: before PoA-hat became the measured-latency estimator (docs/poa-hat.md), the first
Optuna value and every point's ``poa_hat`` held what is now the routing regret. A trial without the
``routing_regret`` attribute is such a trial: it reads back with that value as ``routing_regret``
and PoA-hat NaN, so no figure changes meaning silently.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autotune.intervals import Interval
from autotune.metrics import FIELDS as METRIC_FIELDS
from autotune.metrics import PointMetrics
from autotune.scoring import PointScore, TrialResult
from autotune.search.leases import LEASE_GPUS, LEASE_NODES, LEASE_WAIT_S

# user-attribute keys (the stored schema; renaming one breaks --resume of older studies)
TOPOLOGY, GPUS, BASELINE = "topology", "gpus", "baseline"
PRUNE_REASON, FAIL_REASON, DURATION_S = "prune_reason", "fail_reason", "duration_s"
POINTS, META = "points", "meta"
REDEPLOY, DEPLOY_S = "redeploy", "deploy_s"  # live backends: what the deploy reused, and how long it took
GROUPED = "grouped"  # the shape was held for router grouping; the sampler chose only the router
SAME_AS = "same_as"  # a deterministic backend's twin: this trial's result is that trial's, not re-run
POLISH_OF = "polish_of"  # run after the budget on this recommendation's GPU count (autotune.search.polish)
SCALARS = (
    "knee_concurrency",
    "ttft_p99_ms",
    "itl_p99_ms",
    "output_tok_s",
    "slo_ok",
    "poa_objective_lo",
    "poa_objective_hi",
    "tok_s_per_gpu_lo",
    "tok_s_per_gpu_hi",
    "operating_concurrency",
    "routing_regret",  # its presence marks a trial whose first value is the measured PoA-hat
    "routing_regret_lo",
    "routing_regret_hi",
)
ROUTING_REGRET = "routing_regret"
OBJECTIVES = ("poa_hat", "tok_s_per_gpu")  # Optuna values, in this order
DIRECTIONS: Final = ("minimize", "maximize")  # Final keeps the literal types optuna wants


def record(trial: optuna.Trial, res: TrialResult) -> None:
    """Store a finished trial's result (then tell the study its objective values)."""
    trial.set_user_attr(TOPOLOGY, res.topology)
    trial.set_user_attr(GPUS, res.gpus)
    for key in SCALARS:
        trial.set_user_attr(key, getattr(res, key))
    trial.set_user_attr(POINTS, json.dumps([_point_doc(p) for p in res.points], default=float))
    trial.set_user_attr(META, json.dumps(res.meta, default=str))
    for key in (REDEPLOY, DEPLOY_S):
        if key in res.meta:
            trial.set_user_attr(key, res.meta[key])
    for key, val in res.constraints.items():
        trial.set_constraint(key, float(val))


def objective_values(res: TrialResult) -> list[float]:
    return [res.poa_objective, res.tok_s_per_gpu]


def _point_doc(p: PointScore) -> dict[str, Any]:
    return {
        "metrics": p.metrics.as_dict(),
        "poa_hat": p.poa_hat,
        "poa_by_stage": p.poa_by_stage,
        "poa_window_median": p.poa_window_median,
        "poa_window_p90": p.poa_window_p90,
        "regime": p.regime,
        "poa_hat_lo": p.poa_hat_lo,
        "poa_hat_hi": p.poa_hat_hi,
        "routing_regret": p.routing_regret,
        "routing_regret_lo": p.routing_regret_lo,
        "routing_regret_hi": p.routing_regret_hi,
        "regret_by_stage": p.regret_by_stage,
    }


def _point(doc: dict[str, Any]) -> PointScore:
    if "metrics" not in doc:  # a study written before the point document had sections: one flat row
        fields = set(METRIC_FIELDS)
        stages = {k[4:]: v for k, v in doc.items() if k.startswith("poa_") and k[4:] in ("prefill", "decode", "agg")}
        doc = {
            "metrics": {k: v for k, v in doc.items() if k in fields},
            "poa_by_stage": stages,
            **{k: doc.get(k, math.nan) for k in ("poa_hat", "poa_window_median", "poa_window_p90")},
            "regime": doc.get("regime", ""),
        }
    if "routing_regret" not in doc:  # legacy: its "poa_hat" was the routing regret (module docstring)
        doc = {
            **doc,
            "poa_hat": math.nan,
            "poa_by_stage": {},
            "poa_window_median": math.nan,
            "poa_window_p90": math.nan,
            "poa_hat_lo": math.nan,
            "poa_hat_hi": math.nan,
            "routing_regret": doc["poa_hat"],
            "routing_regret_lo": doc.get("poa_hat_lo", math.nan),
            "routing_regret_hi": doc.get("poa_hat_hi", math.nan),
            "regret_by_stage": doc["poa_by_stage"],
        }
    return PointScore(
        PointMetrics(**doc["metrics"]),
        doc["poa_hat"],
        dict(doc["poa_by_stage"]),
        doc["poa_window_median"],
        doc["poa_window_p90"],
        doc["regime"],
        doc.get("poa_hat_lo", float("nan")),
        doc.get("poa_hat_hi", float("nan")),
        doc["routing_regret"],
        doc.get("routing_regret_lo", math.nan),
        doc.get("routing_regret_hi", math.nan),
        dict(doc.get("regret_by_stage", {})),
    )


def points(t: FrozenTrial) -> tuple[PointScore, ...]:
    return tuple(_point(d) for d in json.loads(t.user_attrs.get(POINTS, "[]")))


def is_legacy(t: FrozenTrial) -> bool:
    """Recorded before PoA-hat was the measured-latency estimator: its first value is the routing regret."""
    return ROUTING_REGRET not in t.user_attrs


def read_result(t: FrozenTrial) -> TrialResult:
    """The ``TrialResult`` a finished trial was recorded from (a legacy trial: see the module docstring)."""
    a = t.user_attrs
    poa, _ = objective_intervals(t)
    regret = regret_interval(t)
    return TrialResult(
        a[TOPOLOGY],
        a[GPUS],
        points(t),
        a.get("knee_concurrency"),
        poa.value,
        t.values[1],
        a["output_tok_s"],
        a["ttft_p99_ms"],
        a["itl_p99_ms"],
        dict(constraints(t)),
        json.loads(a.get(META, "{}")),
        poa_objective_lo=poa.lo,
        poa_objective_hi=poa.hi,
        tok_s_per_gpu_lo=a.get("tok_s_per_gpu_lo", math.nan),
        tok_s_per_gpu_hi=a.get("tok_s_per_gpu_hi", math.nan),
        operating_concurrency=a.get("operating_concurrency"),
        routing_regret=regret.value,
        routing_regret_lo=regret.lo,
        routing_regret_hi=regret.hi,
    )


def objective_intervals(t: FrozenTrial) -> tuple[Interval, Interval]:
    """(PoA-hat, tok/s per GPU) of a completed trial with their confidence intervals (PoA-hat NaN: legacy)."""
    a = t.user_attrs
    nan = math.nan
    poa = (
        Interval(nan, nan, nan)
        if is_legacy(t)
        else Interval(t.values[0], a.get("poa_objective_lo", nan), a.get("poa_objective_hi", nan))
    )
    return poa, Interval(t.values[1], a.get("tok_s_per_gpu_lo", nan), a.get("tok_s_per_gpu_hi", nan))


def regret_interval(t: FrozenTrial) -> Interval:
    """Routing regret of a completed trial at its operating point, with its confidence interval."""
    a = t.user_attrs
    nan = math.nan
    if is_legacy(t):
        return Interval(t.values[0], a.get("poa_objective_lo", nan), a.get("poa_objective_hi", nan))
    return Interval(a[ROUTING_REGRET], a.get("routing_regret_lo", nan), a.get("routing_regret_hi", nan))


def constraints(t: FrozenTrial) -> dict[str, float]:
    """SLO margins by name (≤ 0 is met); Optuna 5 keeps them as a name → value mapping."""
    cons = t.constraints
    return {str(k): float(v) for k, v in cons.items()} if isinstance(cons, dict) else {}


def violation(t: FrozenTrial) -> float:
    """Total SLO violation (0 when every SLO is met)."""
    return sum(max(0.0, v) for v in constraints(t).values())


def is_baseline(t: FrozenTrial) -> bool:
    return BASELINE in t.user_attrs


def headline(t: FrozenTrial) -> dict[str, Any]:
    """The figures a recommendation quotes for a completed trial."""
    a = t.user_attrs
    return {
        "poa_hat": objective_intervals(t)[0].value,
        "routing_regret": regret_interval(t).value,
        "tok_s_per_gpu": t.values[1],
        "output_tok_s": a.get("output_tok_s"),
        "ttft_p99_ms": a.get("ttft_p99_ms"),
        "itl_p99_ms": a.get("itl_p99_ms"),
        "knee_concurrency": a.get("knee_concurrency"),
    }


def reason(t: FrozenTrial) -> str:
    return t.user_attrs.get(PRUNE_REASON) or t.user_attrs.get(FAIL_REASON) or ""


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        ok = t.state == TrialState.COMPLETE
        a = t.user_attrs
        nan3 = Interval(math.nan, math.nan, math.nan)
        poa, regret = (objective_intervals(t)[0], regret_interval(t)) if ok else (nan3, nan3)
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "topology": a.get(TOPOLOGY, ""),
                "gpus": a.get(GPUS),
                "baseline": a.get(BASELINE, ""),
                "poa_hat": poa.value,
                "poa_hat_lo": poa.lo,
                "poa_hat_hi": poa.hi,
                "routing_regret": regret.value,
                "routing_regret_lo": regret.lo,
                "routing_regret_hi": regret.hi,
                "tok_s_per_gpu": t.values[1] if ok else math.nan,
                "tok_s_per_gpu_lo": a.get("tok_s_per_gpu_lo", math.nan) if ok else math.nan,
                "tok_s_per_gpu_hi": a.get("tok_s_per_gpu_hi", math.nan) if ok else math.nan,
                "output_tok_s": a.get("output_tok_s"),
                "ttft_p99_ms": a.get("ttft_p99_ms"),
                "itl_p99_ms": a.get("itl_p99_ms"),
                "knee_concurrency": a.get("knee_concurrency"),
                "operating_concurrency": a.get("operating_concurrency"),
                "slo_ok": bool(a.get("slo_ok", False)),
                "reason": reason(t),
                "duration_s": a.get(DURATION_S),
                "lease_wait_s": a.get(LEASE_WAIT_S),  # live trials: waited for GPUs, and held them
                "lease_gpus": a.get(LEASE_GPUS),
                "lease_nodes": a.get(LEASE_NODES, ""),
                "redeploy": a.get(REDEPLOY, ""),
                "deploy_s": a.get(DEPLOY_S),
                "grouped": bool(a.get(GROUPED, False)),
                "same_as": a.get(SAME_AS),  # the trial whose result this one repeats (simulator only)
                "polish_of": a.get(POLISH_OF, ""),  # the recommendation on whose GPU count this trial ran
                **{f"param_{k}": v for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows)


def points_frame(trials: list[FrozenTrial]) -> pd.DataFrame:
    rows = [
        {"trial": t.number, "topology": t.user_attrs.get(TOPOLOGY, ""), **p.row()} for t in trials for p in points(t)
    ]
    return pd.DataFrame(rows)


def trial_line(t: FrozenTrial, done: int, total: int) -> str:
    """One plain line per trial for logs (CronJob output)."""
    topo = t.user_attrs.get(TOPOLOGY, "?")
    if t.state == TrialState.PRUNED:
        return f"trial #{t.number} {topo}: skipped (infeasible: {t.user_attrs.get(PRUNE_REASON, '')})"
    if t.state == TrialState.COMPLETE:
        poa, regret, tput = objective_intervals(t)[0].value, regret_interval(t).value, t.values[1]
        return (
            f"trial {done}/{total} #{t.number} {topo}: PoA-hat {poa:.3g} (routing regret {regret:.3f}), "
            f"{tput:.0f} tok/s/GPU, "
            f"TTFT p99 {t.user_attrs.get('ttft_p99_ms', float('nan')):.0f} ms"
            f"{'' if t.user_attrs.get('slo_ok', True) else ' (SLO violated)'}"
            f"{'' if t.user_attrs.get(SAME_AS) is None else f' (as #{t.user_attrs[SAME_AS]}: not re-simulated)'}"
            f"{f' (on the GPUs of {a}: not tried by the search)' if (a := t.user_attrs.get(POLISH_OF)) else ''}"
        )
    return f"trial {done}/{total} #{t.number} {topo}: {t.state.name.lower()} — {reason(t)}"
