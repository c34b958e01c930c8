"""The study's last step: every other shape on the recommended number of GPUs that the sampler never tried.

Shapes on the same GPUs (4P1-8D1, 4P1-1D8, 6P1-3D2 …) often serve the same tok/s per GPU within the
noise (a shared bottleneck such as the frontend) and differ in PoA-hat, so which of them a seed's
sampler happened to visit decided the recommendation (issue 11: one 200-trial study in five never
tried 4P1-1D8). After the budgeted trials, each shape with exactly the recommended GPU count (any
prefill/decode split and TP, aggregated too) that no trial has tried runs once, at the recommended
router settings, and the recommendation is taken again over all trials: on that GPU count the
choice of shape is exhaustive. The variants keep the GPU count, so a second pass adds nothing.
The pass runs at most a quarter of the budget (``SHARE``), nearest splits first (the same GPUs per
pool, then one GPU moved between the pools, …), so a small study stays small.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.feasibility import check_feasibility
from autotune.profile import Profile
from autotune.search import trials
from autotune.search.select import select, shape
from autotune.search.space import outside_space, topology_params
from autotune.topology import Topology, parse_topology

SHARE = 0.25  # the polish pass's trials, at most, as a share of the study's budget


def pool_splits(gpus: int, tps: list[int], max_workers: int) -> list[tuple[int, int]]:
    """(workers, TP) pairs that use exactly ``gpus`` GPUs, within the search space's limits."""
    return [(gpus // tp, tp) for tp in sorted(tps) if gpus % tp == 0 and 1 <= gpus // tp <= max_workers]


def split_variants(topo: Topology, profile: Profile) -> list[Topology]:
    """Every other shape of the search space on exactly ``topo``'s GPUs, at ``topo``'s router settings."""
    s, g = profile.search, topo.gpus
    shapes = [
        Topology(pn, ptp, dn, dtp)
        for p in range(1, g)
        for pn, ptp in pool_splits(p, list(s.prefill_tp), s.max_prefill_workers)
        for dn, dtp in pool_splits(g - p, list(s.decode_tp), s.max_decode_workers)
    ]
    if s.allow_aggregated:
        limit = max(1, profile.cluster.total_gpus // min(s.aggregated_tp))
        shapes += [Topology(agg_workers=n, agg_tp=tp) for n, tp in pool_splits(g, list(s.aggregated_tp), limit)]
    return [t.with_router(topo.router) for t in shapes if t.shape() != topo.shape()]


def queued(all_trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The pass's trials waiting to run (just enqueued, or left by an interrupted pass)."""
    return [t for t in all_trials if t.state == TrialState.WAITING and trials.POLISH_OF in t.user_attrs]


def _tried_shapes(all_trials: list[FrozenTrial]) -> set[str]:
    """Shapes a trial has run, is running, or waits to run in the pass."""
    done = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)]
    return {shape(t) for t in done + queued(all_trials)}


def _prefill_gpus(t: Topology) -> int:
    return t.prefill_workers * t.prefill_tp if t.disaggregated else 0


def enqueue_splits(study: optuna.Study, profile: Profile, budget: int) -> tuple[list[Topology], int]:
    """Enqueue the untried, feasible shapes on the recommended GPU count, nearest first, as many as the
    pass has left of ``SHARE`` of ``budget``; return them and how many were left untried."""
    all_trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in all_trials):
        return [], 0
    leader = select(study).trial
    topo = parse_topology(leader.user_attrs[trials.TOPOLOGY])
    tried = _tried_shapes(all_trials)
    untried = [
        v
        for v in split_variants(topo, profile)
        if v.shape() not in tried and not outside_space(v, profile) and check_feasibility(v, profile).ok
    ]
    untried.sort(
        key=lambda v: (v.disaggregated != topo.disaggregated, abs(_prefill_gpus(v) - _prefill_gpus(topo)), v.shape())
    )
    polished = sum(1 for t in all_trials if trials.POLISH_OF in t.user_attrs and t.state != TrialState.FAIL)
    room = max(0, max(1, int(budget * SHARE)) - polished)
    for v in untried[:room]:
        attrs = {trials.POLISH_OF: topo.to_string(), trials.TOPOLOGY: v.to_string()}
        study.enqueue_trial(topology_params(v, profile), user_attrs=attrs)
    return untried[:room], len(untried[room:])
