"""Roofline step-time model calibrated to the reference points in perf_model.md.

Step time = max(compute, memory) + TP all-reduce + fixed overheads (perf_model.md §3):
compute counts GEMM FLOPs of the active non-embedding weights plus attention, memory counts the
weight shard and the KV read by decode. Overheads and efficiencies come per framework from
``catalog/frameworks.yaml`` so they can be checked against their sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotune import catalog
from autotune.profile import DTYPE_BYTES, Profile


@dataclass(frozen=True)
class RooflineTimer:
    """Constants for one (GPU, model, TP) so ``step_s`` is a handful of float ops."""

    tp: int
    flops_per_token: float  # 2 × active non-embedding params
    head_flops_per_seq: float  # LM head, once per emitting sequence
    attn_coef: float  # 4·L·d_attn
    dense_weight_bytes: float  # per GPU
    expert_bytes: float  # per GPU, per expert (0 for dense models)
    experts: int
    experts_per_token: int
    kv_bytes_per_token: float  # per GPU
    compute_rate_prefill: float  # FLOP/s over the TP group, after MFU
    compute_rate_decode: float
    mem_rate: float  # B/s per GPU, after MBU
    ar_fixed_s: float  # 2·L·α
    ar_per_token_s: float  # 2·L·2(t−1)/t·d·2B / B_bus
    step_overhead_s: float
    per_seq_overhead_s: float

    def weight_read_bytes(self, tokens: int) -> float:
        if self.experts <= 1 or self.expert_bytes == 0:
            return self.dense_weight_bytes
        # expected distinct experts touched when each token picks k of E experts
        touched = self.experts * (1.0 - (1.0 - self.experts_per_token / self.experts) ** max(tokens, 1))
        return self.dense_weight_bytes + touched * self.expert_bytes

    def step_s(
        self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_ctx_tokens: int, kv_usage: float
    ) -> float:
        tokens = prefill_tokens + decode_seqs
        if tokens <= 0:
            return 0.0
        emitting = decode_seqs + (1 if prefill_tokens else 0)
        flops = self.flops_per_token * tokens + self.head_flops_per_seq * emitting
        flops += self.attn_coef * (prefill_attn + decode_ctx_tokens)
        rate = self.compute_rate_prefill if prefill_tokens else self.compute_rate_decode
        compute = flops / rate
        memory = (self.weight_read_bytes(tokens) + self.kv_bytes_per_token * decode_ctx_tokens) / self.mem_rate
        comm = self.ar_fixed_s + self.ar_per_token_s * tokens if self.tp > 1 else 0.0
        return max(compute, memory) + comm + self.step_overhead_s + self.per_seq_overhead_s * emitting


class RooflinePerfModel:
    """Per-TP timers for the profile's GPU, model, dtypes and framework."""

    name = "roofline"

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        # the catalog's constants, with what the profile measured for its deployment on top
        self.framework = {**catalog.load("frameworks")[profile.dynamo.framework], **profile.perf.overrides()}
        self._timers: dict[int, RooflineTimer] = {}

    def timer(self, tp: int) -> RooflineTimer:
        t = self._timers.get(tp)
        if t is None:
            t = self._timers[tp] = self._build(tp)
        return t

    def _build(self, tp: int) -> RooflineTimer:
        p, m, fw = self.profile, self.profile.model, self.framework
        gpu, cluster = p.cluster.gpu, p.cluster
        wbytes = DTYPE_BYTES[m.weight_dtype]
        embed_params = (1 if m.tied_embeddings else 2) * m.vocab * m.hidden  # input embedding + LM head
        total_ne = m.params_b * 1e9 - embed_params
        active_ne = (m.active_params_b or m.params_b) * 1e9 - embed_params
        if m.experts > 1:
            per_expert = (m.params_b - (m.active_params_b or m.params_b)) * 1e9 / (m.experts - m.experts_per_token)
            dense = total_ne - per_expert * m.experts
        else:
            per_expert, dense = 0.0, total_ne
        # the LM head is read every step; the input embedding is a gather (negligible)
        dense_bytes = (dense + m.vocab * m.hidden) * wbytes / tp
        peak = gpu.peak_tflops(m.weight_dtype) * 1e12 * tp
        bus_gb_s = gpu.allreduce_bus_gb_s if tp <= cluster.gpus_per_node else cluster.inter_bw_gb_s
        ar_bytes_per_token = m.hidden * 2  # activations all-reduced in BF16
        return RooflineTimer(
            tp=tp,
            flops_per_token=2 * active_ne,
            head_flops_per_seq=2 * m.vocab * m.hidden,
            attn_coef=4 * m.layers * m.heads * m.head_dim,
            dense_weight_bytes=dense_bytes,
            expert_bytes=per_expert * wbytes / tp,
            experts=m.experts,
            experts_per_token=m.experts_per_token,
            kv_bytes_per_token=m.kv_bytes_per_token / min(tp, m.kv_heads),
            compute_rate_prefill=peak * fw["prefill_mfu"],
            compute_rate_decode=peak * fw["decode_mfu"],
            mem_rate=gpu.hbm_bw_tb_s * 1e12 * fw["decode_mbu"],
            ar_fixed_s=2 * m.layers * gpu.allreduce_latency_us * 1e-6,
            ar_per_token_s=2 * m.layers * 2 * (tp - 1) / tp * ar_bytes_per_token / (bus_gb_s * 1e9),
            step_overhead_s=fw["step_overhead_ms"] * 1e-3 + m.layers * fw["per_layer_overhead_us"] * 1e-6,
            per_seq_overhead_s=fw["per_seq_overhead_us"] * 1e-6,
        )

    def describe(self) -> dict[str, object]:
        return {"perf_model": "roofline", "framework": self.profile.dynamo.framework, **self.framework}
