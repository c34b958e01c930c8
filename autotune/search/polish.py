"""The study's last step: the recommended shape's other pool splits, where the sampler never tried them.

Two shapes that give each pool the same GPUs in another TP split (4P1-8D1 and 4P1-1D8) often serve the
same tok/s per GPU within the noise and differ in PoA-hat; which of them a seed's sampler happens to
visit decided the recommendation (issue 11: one seed in five never tried 4P1-1D8). After the budgeted
trials, each split of the recommended shape's pools that no trial has tried is run once, at the
recommended router settings, and the recommendation is taken again over all trials. Variants keep
both pools' GPU counts, so the neighbourhood is closed: a second pass adds nothing new.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.feasibility import check_feasibility
from autotune.profile import Profile
from autotune.search import trials
from autotune.search.select import select
from autotune.search.space import outside_space, topology_params
from autotune.topology import Topology, parse_topology


def pool_splits(gpus: int, tps: list[int], max_workers: int) -> list[tuple[int, int]]:
    """(workers, TP) pairs that use exactly ``gpus`` GPUs, within the search space's limits."""
    return [(gpus // tp, tp) for tp in sorted(tps) if gpus % tp == 0 and 1 <= gpus // tp <= max_workers]


def split_variants(topo: Topology, profile: Profile) -> list[Topology]:
    """The shapes with the same GPUs per pool as ``topo`` in other TP splits, at ``topo``'s router settings."""
    s = profile.search
    if topo.disaggregated:
        pre = pool_splits(topo.prefill_workers * topo.prefill_tp, list(s.prefill_tp), s.max_prefill_workers)
        dec = pool_splits(topo.decode_workers * topo.decode_tp, list(s.decode_tp), s.max_decode_workers)
        shapes = [Topology(pn, ptp, dn, dtp) for pn, ptp in pre for dn, dtp in dec]
    else:
        limit = max(1, profile.cluster.total_gpus // min(s.aggregated_tp))
        shapes = [Topology(agg_workers=n, agg_tp=tp) for n, tp in pool_splits(topo.gpus, list(s.aggregated_tp), limit)]
    return [t.with_router(topo.router) for t in shapes if t.shape() != topo.shape()]


def _tried_shapes(all_trials: list[FrozenTrial]) -> set[str]:
    """Shapes a trial has run, is running, or waits to run (an enqueued split of an interrupted pass)."""
    out = set()
    for t in all_trials:
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED):
            out.add(str(t.user_attrs.get(trials.TOPOLOGY, "")).split("@")[0])
        elif t.state == TrialState.WAITING and trials.POLISH_OF in t.user_attrs:
            out.add(str(t.user_attrs.get(trials.TOPOLOGY, "")).split("@")[0])
    return out


def enqueue_splits(study: optuna.Study, profile: Profile) -> list[Topology]:
    """Enqueue the recommended shape's untried, feasible pool splits; return them (none: nothing to do)."""
    all_trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in all_trials):
        return []
    leader = select(study).trial
    topo = parse_topology(leader.user_attrs[trials.TOPOLOGY])
    tried = _tried_shapes(all_trials)
    added = []
    for v in split_variants(topo, profile):
        if v.shape() in tried or outside_space(v, profile) or not check_feasibility(v, profile).ok:
            continue
        attrs = {trials.POLISH_OF: topo.to_string(), trials.TOPOLOGY: v.to_string()}
        study.enqueue_trial(topology_params(v, profile), user_attrs=attrs)
        added.append(v)
    return added
