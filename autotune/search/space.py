"""The search space: from an Optuna trial to a Topology, and back for enqueued baselines.

Worker counts and TP degrees are suggested per pool; aggregated serving is one more branch of the
``mode`` choice. Infeasible combinations are not run: the caller prunes them with the reason from
``check_feasibility``, and TPE learns from pruned trials.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import optuna

from autotune.profile import Profile
from autotune.topology import RouterSettings, Topology


def _float(trial: optuna.Trial, name: str, bounds: tuple[float, float], step: float | None) -> float:
    lo, hi = bounds
    if lo == hi:
        return lo
    if step is not None:
        hi = lo + step * round((hi - lo) / step)
        return round(trial.suggest_float(name, lo, hi, step=step), 6)
    return round(trial.suggest_float(name, lo, hi), 6)


ROUTER_PARAMS = ("temperature", "overlap_weight", "overlap_credit")  # what a frontend-only patch can change


def shape_params(params: dict[str, Any]) -> dict[str, Any]:
    """The worker-shape part of a trial's parameters (mode, TP degrees, worker counts): all but the router."""
    return {k: v for k, v in params.items() if k not in ROUTER_PARAMS}


def has_credit(profile: Profile) -> bool:
    return profile.search.overlap_credit is not None and profile.dynamo.version_tuple >= (1, 3)


def suggest_topology(trial: optuna.Trial, profile: Profile) -> Topology:
    s = profile.search
    modes = ["disagg", "agg"] if s.allow_aggregated else ["disagg"]
    mode = trial.suggest_categorical("mode", modes)
    router = RouterSettings(
        temperature=_float(trial, "temperature", s.temperature, s.router_step),
        overlap_weight=_float(trial, "overlap_weight", s.overlap_weight, s.router_step),
        overlap_credit=_float(trial, "overlap_credit", s.overlap_credit, s.router_step)
        if has_credit(profile) and s.overlap_credit
        else 1.0,
    )
    if mode == "agg":
        tp = trial.suggest_categorical("agg_tp", list(s.aggregated_tp))
        n = trial.suggest_int("agg_workers", 1, max(1, profile.cluster.total_gpus // min(s.aggregated_tp)))
        return Topology(agg_workers=n, agg_tp=tp, router=router)
    ptp = trial.suggest_categorical("prefill_tp", list(s.prefill_tp))
    npw = trial.suggest_int("prefill_workers", 1, s.max_prefill_workers)
    dtp = trial.suggest_categorical("decode_tp", list(s.decode_tp))
    ndw = trial.suggest_int("decode_workers", 1, s.max_decode_workers)
    return Topology(npw, ptp, ndw, dtp, router=router)


def topology_params(topo: Topology, profile: Profile) -> dict[str, Any]:
    """Optuna params that reproduce ``topo`` (for ``enqueue_trial``)."""
    r = topo.router
    params: dict[str, Any] = {"temperature": r.temperature, "overlap_weight": r.overlap_weight}
    if has_credit(profile):
        params["overlap_credit"] = r.overlap_credit
    if profile.search.allow_aggregated or topo.disaggregated:
        params["mode"] = "disagg" if topo.disaggregated else "agg"
    if topo.disaggregated:
        params.update(
            prefill_tp=topo.prefill_tp,
            prefill_workers=topo.prefill_workers,
            decode_tp=topo.decode_tp,
            decode_workers=topo.decode_workers,
        )
    else:
        params.update(agg_tp=topo.agg_tp, agg_workers=topo.agg_workers)
    return params


def enumerate_space(profile: Profile) -> list[Topology]:
    """Every point of a discretized space (needs ``search.router_step``): for exhaustive baselines."""
    s = profile.search
    if s.router_step is None:
        raise ValueError("enumerate_space needs search.router_step")
    step = s.router_step

    def grid(bounds: tuple[float, float]) -> list[float]:
        lo, hi = bounds
        return [round(float(x), 10) for x in np.arange(lo, hi + step / 2, step)] if hi > lo else [lo]

    credits = grid(s.overlap_credit) if has_credit(profile) and s.overlap_credit else [1.0]
    routers = [
        RouterSettings(t, w, c) for t, w, c in itertools.product(grid(s.temperature), grid(s.overlap_weight), credits)
    ]
    shapes: list[Topology] = []
    for ptp, npw, dtp, ndw in itertools.product(
        s.prefill_tp, range(1, s.max_prefill_workers + 1), s.decode_tp, range(1, s.max_decode_workers + 1)
    ):
        shapes.append(Topology(npw, ptp, ndw, dtp))
    if s.allow_aggregated:
        for tp in s.aggregated_tp:
            for n in range(1, max(1, profile.cluster.total_gpus // min(s.aggregated_tp)) + 1):
                shapes.append(Topology(agg_workers=n, agg_tp=tp))
    return [t.with_router(r) for t in shapes for r in routers]


def outside_space(topo: Topology, profile: Profile) -> str:
    """Why a (baseline) topology cannot be expressed in the search space, or ''."""
    s = profile.search
    r = topo.router
    for name, v, b in (
        ("temperature", r.temperature, s.temperature),
        ("overlap_weight", r.overlap_weight, s.overlap_weight),
    ):
        if not b[0] <= v <= b[1]:
            return f"search.{name} {list(b)} excludes {v:g}"
    if topo.disaggregated:
        checks = [
            ("prefill_tp", topo.prefill_tp in s.prefill_tp),
            ("decode_tp", topo.decode_tp in s.decode_tp),
            ("max_prefill_workers", topo.prefill_workers <= s.max_prefill_workers),
            ("max_decode_workers", topo.decode_workers <= s.max_decode_workers),
        ]
    else:
        checks = [("allow_aggregated", s.allow_aggregated), ("aggregated_tp", topo.agg_tp in s.aggregated_tp)]
    for name, ok in checks:
        if not ok:
            return f"search.{name} excludes it"
    return ""
