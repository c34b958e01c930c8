"""Feasibility: whether a topology fits the profile's cluster — GPU budget, node packing, TP rules, KV pool.

Separate from ``topology`` (pure values) because it needs the profile: the cluster, the model's
weights and heads, the engine's memory settings and the workload's longest request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autotune.profile import Profile
from autotune.topology import Topology


@dataclass(frozen=True)
class Feasibility:
    ok: bool
    reason: str = ""
    placement: tuple[tuple[int, ...], ...] = ()  # node indices of each worker's GPUs, worker_tps() order
    kv_tokens: dict[str, int] = field(default_factory=dict)  # KV pool per worker role, in tokens


def kv_capacity_tokens(profile: Profile, tp: int) -> int:
    """KV pool of one worker at TP ``tp``: HBM × fraction − reserve − weight shard, over KV per token.

    KV heads shard across ranks up to ``kv_heads``; beyond that they are replicated (perf_model.md §2).
    ``engine.num_gpu_blocks_override`` wins over the computation once the weights fit, as in vLLM.
    """
    m, gpu, eng = profile.model, profile.cluster.gpu, profile.engine
    per_gpu_bytes = gpu.hbm_gb * 1e9 * eng.gpu_memory_fraction - eng.reserve_gb * 1e9 - m.weight_bytes / tp
    if per_gpu_bytes <= 0:
        return 0
    if eng.num_gpu_blocks_override is not None:
        return eng.num_gpu_blocks_override * eng.block_size
    kv_per_token_per_gpu = m.kv_bytes_per_token / min(tp, m.kv_heads)
    return int(per_gpu_bytes / kv_per_token_per_gpu)


def _pack(tps: list[int], profile: Profile) -> tuple[tuple[int, ...], ...] | None:
    """The workers onto the whole, empty cluster."""
    c = profile.cluster
    return pack_onto(tps, [c.gpus_per_node] * c.nodes, c.gpus_per_node)


def pack_onto(tps: list[int], free: list[int], per_node: int) -> tuple[tuple[int, ...], ...] | None:
    """First-fit-decreasing onto nodes with ``free`` GPUs each; multi-node workers take whole free nodes.

    None if it does not fit. The GPU leases call it with what running graphs leave free, so the
    combined set of graphs always packs (``autotune.search.leases``).
    """
    free = list(free)
    placed: dict[int, tuple[int, ...]] = {}
    for i in sorted(range(len(tps)), key=lambda j: -tps[j]):
        tp = tps[i]
        if tp > per_node:
            need = tp // per_node
            whole = [n for n, f in enumerate(free) if f == per_node][:need]
            if len(whole) < need:
                return None
            for n in whole:
                free[n] = 0
            placed[i] = tuple(whole)
            continue
        node = next((n for n, f in enumerate(free) if f >= tp), None)
        if node is None:
            return None
        free[node] -= tp
        placed[i] = (node,)
    return tuple(placed[i] for i in range(len(tps)))


def check_feasibility(topo: Topology, profile: Profile) -> Feasibility:
    """Why a topology cannot run on the profile's cluster, or where each worker goes if it can."""
    c = profile.cluster
    if topo.gpus == 0:
        return Feasibility(False, "the topology has no workers")
    if topo.disaggregated and topo.decode_workers == 0:
        return Feasibility(False, "a disaggregated topology needs at least one decode worker")
    if topo.gpus > c.total_gpus:
        return Feasibility(
            False, f"needs {topo.gpus} GPUs, the cluster has {c.total_gpus} ({c.nodes}x{c.gpus_per_node})"
        )
    kv: dict[str, int] = {}
    for role, tp in set(topo.worker_tps()):
        if tp > c.gpus_per_node:
            if not c.allow_multinode_workers:
                return Feasibility(
                    False,
                    f"{role} TP{tp} exceeds {c.gpus_per_node} GPUs per node and multi-node workers are not allowed",
                )
            if tp % c.gpus_per_node:
                return Feasibility(False, f"{role} TP{tp} is not a whole number of {c.gpus_per_node}-GPU nodes")
        if tp & (tp - 1):
            return Feasibility(False, f"{role} TP{tp} is not a power of two")
        if profile.model.heads % tp:
            return Feasibility(
                False, f"{role} TP{tp} does not divide the model's {profile.model.heads} attention heads"
            )
        tokens = kv_capacity_tokens(profile, tp)
        need = max(profile.engine.min_kv_tokens, max_request_tokens(profile))
        if tokens < need:
            weights_gb = profile.model.weight_bytes / tp / 1e9
            if tokens > 0 and profile.engine.num_gpu_blocks_override is not None:
                return Feasibility(
                    False,
                    f"{role} TP{tp}: engine.num_gpu_blocks_override gives a KV pool of {tokens} tokens, "
                    f"below the minimum {need}",
                )
            return Feasibility(
                False,
                f"{role} TP{tp}: {weights_gb:.1f} GB of weights per GPU leave a KV pool of {max(tokens, 0)} tokens, "
                f"below the minimum {need}",
            )
        kv[role] = tokens
    placement = _pack([tp for _, tp in topo.worker_tps()], profile)
    if placement is None:
        return Feasibility(False, f"the workers cannot be packed onto {c.nodes} nodes of {c.gpus_per_node} GPUs")
    return Feasibility(True, "", placement, kv)


def max_request_tokens(profile: Profile) -> int:
    """Longest request (input + output) the workload can send: the KV pool must hold one."""
    return profile.workload.max_request_tokens()
