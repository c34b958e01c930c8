"""Topology: the deployment shape a trial tests, its compact string form, and its feasibility.

String form (documented in the README)::

    1P4-5D4                       1 prefill worker at TP4, 5 decode workers at TP4 (disaggregated)
    6A4                           6 aggregated workers at TP4
    1P4-5D4@tau=0.7,omega=0.1     with router temperature τ and overlap weight ω
    ...@credit=1.5                overlap credit (Dynamo 1.3+ only)

``omega`` is the paper's ω: the weight on prefill load relative to decode load (Dynamo 0.9
``--kv-overlap-score-weight``, 1.0-1.2 ``--router-kv-overlap-score-weight``, 1.3+
``--router-prefill-load-scale``). One internal meaning, one name per Dynamo version.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from autotune.errors import InputError
from autotune.profile import Profile


@dataclass(frozen=True)
class RouterSettings:
    """KV-router weights, in the internal (version-free) meaning."""

    temperature: float = 0.0  # τ: 0 = argmin; >0 = softmax sampling over normalised logits
    overlap_weight: float = 1.0  # ω: prefill-load scale; 0 = ignore cache and prefill load
    overlap_credit: float = 1.0  # blocks of credit per overlapping block (1.3+); ω=0 forces 0

    def __post_init__(self) -> None:
        for name in ("temperature", "overlap_weight", "overlap_credit"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(f"router {name} must be a finite number >= 0, got {v!r}")

    @property
    def effective_credit(self) -> float:
        return 0.0 if self.overlap_weight == 0 else self.overlap_credit

    def to_string(self) -> str:
        parts = [f"tau={_num(self.temperature)}", f"omega={_num(self.overlap_weight)}"]
        if self.overlap_credit != 1.0:
            parts.append(f"credit={_num(self.overlap_credit)}")
        return ",".join(parts)


def _num(v: float) -> str:
    """Shortest text that parses back to the same float (``:g`` would round 0.1234567 to 0.123457)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


DEFAULT_ROUTER = RouterSettings()  # Dynamo's defaults: τ 0, ω 1, credit 1 (dynamo.md §2)


@dataclass(frozen=True)
class Topology:
    prefill_workers: int = 0
    prefill_tp: int = 1
    decode_workers: int = 0
    decode_tp: int = 1
    agg_workers: int = 0
    agg_tp: int = 1
    router: RouterSettings = field(default_factory=RouterSettings)

    @property
    def disaggregated(self) -> bool:
        return self.prefill_workers > 0

    @property
    def gpus(self) -> int:
        return self.prefill_workers * self.prefill_tp + self.decode_workers * self.decode_tp + self.agg_workers * self.agg_tp

    def worker_tps(self) -> list[tuple[str, int]]:
        """``(role, tp)`` per worker, prefill first: the order every backend numbers workers in."""
        return (
            [("prefill", self.prefill_tp)] * self.prefill_workers
            + [("decode", self.decode_tp)] * self.decode_workers
            + [("agg", self.agg_tp)] * self.agg_workers
        )

    def shape(self) -> str:
        if self.disaggregated:
            return f"{self.prefill_workers}P{self.prefill_tp}-{self.decode_workers}D{self.decode_tp}"
        return f"{self.agg_workers}A{self.agg_tp}"

    def to_string(self) -> str:
        return f"{self.shape()}@{self.router.to_string()}"

    def __str__(self) -> str:
        return self.to_string()

    def with_router(self, router: RouterSettings) -> Topology:
        return replace(self, router=router)


_SHAPE = re.compile(r"^(?:(?P<np>\d+)P(?P<tp_p>\d+)-(?P<nd>\d+)D(?P<tp_d>\d+)|(?P<na>\d+)A(?P<tp_a>\d+))$")
_ROUTER_KEYS = {"tau": "temperature", "omega": "overlap_weight", "credit": "overlap_credit"}


def parse_topology(text: str, flag: str = "--topology") -> Topology:
    """Parse the compact form; errors name the flag and the offending part."""
    shape, _, router_part = text.strip().partition("@")
    m = _SHAPE.match(shape.strip())
    if not m:
        raise InputError(f"{flag}: cannot parse {text!r}: expected e.g. 1P4-5D4 or 6A4, optionally @tau=0.7,omega=1")
    kw: dict[str, float] = {}
    if router_part:
        for item in router_part.split(","):
            key, eq, val = item.partition("=")
            key = key.strip()
            if not eq or key not in _ROUTER_KEYS:
                raise InputError(f"{flag}: unknown router setting {item!r} in {text!r} (use tau=, omega=, credit=)")
            try:
                kw[_ROUTER_KEYS[key]] = float(val)
            except ValueError:
                raise InputError(f"{flag}: {key} must be a number, got {val!r}") from None
    try:
        router = RouterSettings(**kw)
    except InputError as exc:
        raise InputError(f"{flag}: {exc}") from None
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "na" in g:
        topo = Topology(agg_workers=g["na"], agg_tp=g["tp_a"], router=router)
        counts = [("aggregated workers", g["na"]), ("TP", g["tp_a"])]
    else:
        topo = Topology(g["np"], g["tp_p"], g["nd"], g["tp_d"], router=router)
        counts = [("prefill workers", g["np"]), ("prefill TP", g["tp_p"]), ("decode workers", g["nd"]), ("decode TP", g["tp_d"])]
    for what, n in counts:
        if n < 1:
            raise InputError(f"{flag}: {what} must be at least 1 in {text!r}")
    return topo


@dataclass(frozen=True)
class Feasibility:
    ok: bool
    reason: str = ""
    placement: tuple[tuple[int, ...], ...] = ()  # node indices of each worker's GPUs, worker_tps() order
    kv_tokens: dict[str, int] = field(default_factory=dict)  # KV pool per worker role, in tokens


def kv_capacity_tokens(profile: Profile, tp: int) -> int:
    """KV pool of one worker at TP ``tp``: HBM × fraction − reserve − weight shard, over KV per token.

    KV heads shard across ranks up to ``kv_heads``; beyond that they are replicated (perf_model.md §2).
    """
    m, gpu, eng = profile.model, profile.cluster.gpu, profile.engine
    per_gpu_bytes = gpu.hbm_gb * 1e9 * eng.gpu_memory_fraction - eng.reserve_gb * 1e9 - m.weight_bytes / tp
    if per_gpu_bytes <= 0:
        return 0
    kv_per_token_per_gpu = m.kv_bytes_per_token / min(tp, m.kv_heads)
    return int(per_gpu_bytes / kv_per_token_per_gpu)


def _pack(tps: list[int], profile: Profile) -> tuple[tuple[int, ...], ...] | None:
    """First-fit-decreasing onto nodes; multi-node workers take whole nodes. None if it does not fit."""
    per_node = profile.cluster.gpus_per_node
    free = [per_node] * profile.cluster.nodes
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
        return Feasibility(False, f"needs {topo.gpus} GPUs, the cluster has {c.total_gpus} ({c.nodes}x{c.gpus_per_node})")
    kv: dict[str, int] = {}
    for role, tp in set(topo.worker_tps()):
        if tp > c.gpus_per_node:
            if not c.allow_multinode_workers:
                return Feasibility(False, f"{role} TP{tp} exceeds {c.gpus_per_node} GPUs per node and multi-node workers are not allowed")
            if tp % c.gpus_per_node:
                return Feasibility(False, f"{role} TP{tp} is not a whole number of {c.gpus_per_node}-GPU nodes")
        if tp & (tp - 1):
            return Feasibility(False, f"{role} TP{tp} is not a power of two")
        if profile.model.heads % tp:
            return Feasibility(False, f"{role} TP{tp} does not divide the model's {profile.model.heads} attention heads")
        tokens = kv_capacity_tokens(profile, tp)
        need = max(profile.engine.min_kv_tokens, max_request_tokens(profile))
        if tokens < need:
            weights_gb = profile.model.weight_bytes / tp / 1e9
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
    def hi(d: object) -> int:
        for attr in ("value", "max"):
            v = getattr(d, attr, None)
            if v:
                return int(v)
        return int(d.mean + 4 * d.std)

    return hi(profile.workload.input_tokens) + hi(profile.workload.output_tokens)
