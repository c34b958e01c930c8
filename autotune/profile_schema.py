"""The sections of a profile (cluster, model, workload, measurement, SLOs, search space).

Each section is a frozen pydantic model with ``extra="forbid"`` so a typo is an error that names its
field; cross-section checks live on ``Profile`` in ``autotune.profile``. The serving sections (Dynamo,
engine, KV transfer) live in ``autotune.profile_serving`` and the shared types in
``autotune.profile_types``; both are re-exported here so ``from autotune.profile_schema import X`` keeps working.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from autotune.profile_serving import (  # noqa: F401 - re-exported
    DynamoSpec,
    EngineSpec,
    ExtraArg,
    KvTransferSpec,
    PerfSpec,
    SecretRef,
)
from autotune.profile_types import (  # noqa: F401 - re-exported
    DTYPE_BYTES,
    MAX_CONCURRENCY,
    MAX_GPUS_PER_NODE,
    MAX_NODES,
    MAX_REQUESTS,
    MAX_TOKENS,
    MAX_TRIALS,
    SEED_MAX,
    Concurrency,
    Dtype,
    NonNeg,
    Pos,
    PosInt,
    Requests,
    RouterWeight,
    Seed,
    Tokens,
    _Strict,
)
from autotune.topology import MAX_WORKERS, ROUTER_MAX
from autotune.traces.spec import TraceSpec
from autotune.traces.trace import load_trace


class GpuSpec(_Strict):
    name: str
    bf16_tflops: Pos
    fp8_tflops: Pos
    fp4_tflops: Pos | None = None
    hbm_gb: Pos  # usable HBM, decimal GB as vendors quote it
    hbm_bw_tb_s: Pos
    nvlink_gb_s: Pos
    allreduce_bus_gb_s: Pos
    network_gb_s: Pos
    allreduce_latency_us: NonNeg = 10.0

    def peak_tflops(self, dtype: str) -> float:
        if dtype == "fp4":
            return self.fp4_tflops or self.fp8_tflops
        return self.fp8_tflops if dtype == "fp8" else self.bf16_tflops


class ModelSpec(_Strict):
    name: str
    layers: PosInt
    hidden: PosInt
    heads: PosInt
    kv_heads: PosInt
    head_dim: PosInt
    ffn: PosInt
    params_b: Pos
    vocab: PosInt
    active_params_b: Pos | None = None
    experts: PosInt = 1
    experts_per_token: PosInt = 1
    weight_dtype: Dtype = "bf16"
    kv_dtype: Dtype = "bf16"
    # input embedding and LM head share one matrix (HF tie_word_embeddings): one vocab x hidden, not two
    tied_embeddings: bool = False
    served_name: str | None = None  # the name clients send; defaults to ``name``
    # longest sequence (input + output) the model serves: HF config max_position_embeddings (catalog)
    max_context_tokens: Tokens | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.active_params_b and self.active_params_b > self.params_b:
            raise ValueError("active_params_b exceeds params_b")
        if self.experts_per_token > self.experts:
            raise ValueError("experts_per_token exceeds experts")
        if 1 < self.experts == self.experts_per_token:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) equals experts: that is a dense model")
        return self

    @property
    def kv_bytes_per_token(self) -> float:
        """Whole-model KV bytes per token (all layers, K and V, all KV heads)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[self.kv_dtype]

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * DTYPE_BYTES[self.weight_dtype]


class ClusterSpec(_Strict):
    nodes: Annotated[int, Field(gt=0, le=MAX_NODES)]
    gpu: GpuSpec
    gpus_per_node: Annotated[int, Field(gt=0, le=MAX_GPUS_PER_NODE)]
    intra_node_bw_gb_s: Pos | None = None  # default: the GPU's NVLink bandwidth
    inter_node_bw_gb_s: Pos | None = None  # default: the GPU's scale-out bandwidth
    allow_multinode_workers: bool = False

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def intra_bw_gb_s(self) -> float:
        return self.intra_node_bw_gb_s or self.gpu.nvlink_gb_s

    @property
    def inter_bw_gb_s(self) -> float:
        return self.inter_node_bw_gb_s or self.gpu.network_gb_s


class FixedDist(_Strict):
    dist: Literal["fixed"]
    value: Tokens


class UniformDist(_Strict):
    dist: Literal["uniform"]
    min: Tokens
    max: Tokens

    @model_validator(mode="after")
    def _check(self) -> UniformDist:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
        return self


class NormalDist(_Strict):
    dist: Literal["normal"]
    mean: Annotated[float, Field(gt=0, le=MAX_TOKENS)]
    std: Annotated[float, Field(ge=0, le=MAX_TOKENS)]
    min: Tokens = 1
    max: Tokens | None = None

    @model_validator(mode="after")
    def _check(self) -> NormalDist:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) exceeds max ({self.max})")
        return self


LengthDist = Annotated[Union[FixedDist, UniformDist, NormalDist], Field(discriminator="dist")]


class SpikeSpec(_Strict):
    """Open-loop rate schedule: base rate, then ``peak_rate_rps`` between start and end."""

    start_s: NonNeg
    duration_s: Pos
    peak_rate_rps: Pos


class FixedThink(_Strict):
    dist: Literal["fixed"]
    value_ms: Annotated[float, Field(ge=0, le=86_400_000)]


class ExponentialThink(_Strict):
    dist: Literal["exponential"]
    mean_ms: Annotated[float, Field(gt=0, le=86_400_000)]


class UniformThink(_Strict):
    dist: Literal["uniform"]
    min_ms: Annotated[float, Field(ge=0, le=86_400_000)]
    max_ms: Annotated[float, Field(ge=0, le=86_400_000)]

    @model_validator(mode="after")
    def _check(self) -> UniformThink:
        if self.min_ms > self.max_ms:
            raise ValueError(f"min_ms ({self.min_ms}) exceeds max_ms ({self.max_ms})")
        return self


ThinkTime = Annotated[Union[FixedThink, ExponentialThink, UniformThink], Field(discriminator="dist")]


class WorkloadSpec(_Strict):
    templates: Annotated[int, Field(gt=0, le=MAX_REQUESTS)] = 5
    prefix_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 96  # tokens of a request shared with its template
    input_tokens: LengthDist = FixedDist(dist="fixed", value=128)
    output_tokens: LengthDist = FixedDist(dist="fixed", value=128)
    arrival: Literal["closed", "open"] = "closed"
    rate_rps: Pos | None = None  # open loop
    spike: SpikeSpec | None = None
    concurrency: list[Concurrency] = Field(default_factory=lambda: [16, 32, 64, 96, 128, 192, 256], min_length=1)
    requests_per_point: Requests = 2000
    warmup_requests: Annotated[int, Field(ge=0, le=MAX_REQUESTS)] = 100
    cooldown_requests: Annotated[int, Field(ge=0, le=MAX_REQUESTS)] = 100
    # replay a trace instead of the length distributions, templates and arrival above (docs/traces.md)
    trace: TraceSpec | None = None
    # closed loop: a client's pause between a response's last token and its next request (unset = none)
    think_time: ThinkTime | None = None
    # tokens the chat template puts before the user prompt (system header: the same in every request, so
    # shared by all) and after it (the assistant header: after unique text, so never shared); part of
    # every request's input_tokens
    chat_template_tokens_before: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 0
    chat_template_tokens_after: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 0

    @model_validator(mode="after")
    def _check(self) -> WorkloadSpec:
        if sorted(set(self.concurrency)) != list(self.concurrency):
            raise ValueError("concurrency must be strictly increasing without repeats")
        if self.trace is not None and (self.arrival == "open" or self.spike is not None):
            raise ValueError("trace: the trace's mode sets the arrivals; drop workload.arrival 'open' and spike")
        if self.trace is not None:
            load_trace(self.trace)  # a missing file or a bad line is an error of the profile: file:line: field
        if self.arrival == "open" and self.rate_rps is None:
            raise ValueError("open-loop arrival needs rate_rps")
        if self.spike is not None and self.arrival != "open":
            raise ValueError("spike is an open-loop rate schedule: it needs arrival 'open'")
        if self.think_time is not None and self.arrival != "closed":
            raise ValueError("think_time is a closed-loop client's pause: it needs arrival 'closed'")
        if self.warmup_requests + self.cooldown_requests >= self.requests_per_point:
            raise ValueError("warmup_requests + cooldown_requests leave no measured requests")
        return self

    @property
    def open_loop(self) -> bool:
        """Requests arrive at set times (a rate, or a trace's timestamps), not when a client is free."""
        return self.arrival == "open" or (self.trace is not None and self.trace.mode == "timestamps")

    @property
    def fixed_tokens(self) -> int:
        """Tokens of a prompt that are not its own: the chat template's and the template's shared prefix."""
        return self.chat_template_tokens_before + self.prefix_tokens + self.chat_template_tokens_after

    def min_input_tokens(self) -> int:
        d = self.input_tokens
        return d.value if isinstance(d, FixedDist) else d.min

    def max_request_tokens(self) -> int:
        """Longest request (input + output) the workload can send (a normal without max: mean + 4 std)."""
        if self.trace is not None:
            return load_trace(self.trace).max_request_tokens

        def hi(d: FixedDist | UniformDist | NormalDist) -> int:
            if isinstance(d, FixedDist):
                return d.value
            if d.max is not None:
                return d.max
            return int(d.mean + 4 * d.std)

        return hi(self.input_tokens) + hi(self.output_tokens)

    def measurement_edges(self, n: int) -> tuple[int, int]:
        """Warm-up and cool-down requests for a point of ``n`` requests: the profile's counts, or their share of ``n``."""
        if n == self.requests_per_point:
            return self.warmup_requests, self.cooldown_requests
        return (
            n * self.warmup_requests // self.requests_per_point,
            n * self.cooldown_requests // self.requests_per_point,
        )

    def too_few_requests(self, n: int, concurrency: int) -> str:
        """Why ``n`` requests cannot measure a closed-loop point at ``concurrency`` (or ''): the measured
        window needs at least ``concurrency`` requests between the warm-up and cool-down edges, else the
        point is all ramp-up and ramp-down and its throughput is meaningless."""
        if self.open_loop:
            return ""
        warm, cool = self.measurement_edges(n)
        need = concurrency + warm + cool
        if n < need:
            return (
                f"{n} requests per point cannot measure concurrency {concurrency}: "
                f"need at least {need} (concurrency + {warm} warm-up + {cool} cool-down)"
            )
        return ""


class MeasurementSpec(_Strict):
    """How precisely a load point is measured (docs/measurement.md).

    A point runs until every headline figure's confidence interval is narrower than its target,
    relative to the figure (P50s and means: ``rel_half_width_centre``; P99s: ``rel_half_width_tail``),
    or until ``max_requests``; it says which. The request count a user or profile gives is the start.
    """

    ci_level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    rel_half_width_centre: Annotated[float, Field(gt=0, le=1)] = 0.05
    rel_half_width_tail: Annotated[float, Field(gt=0, le=1)] = 0.10
    adaptive: bool = True
    max_requests: Annotated[int, Field(ge=10, le=1_000_000)] = 16_000
    # where a search point starts when search.requests_per_point is not set: a few requests per client
    # (the first wave drains, then ~20 batches), and never fewer than a P99's interval needs (~430
    # steady samples, intervals.tail_samples_needed, plus the warm-up); low-variance points finish
    # there, the rest grow
    min_requests: Annotated[int, Field(ge=10, le=1_000_000)] = 600
    requests_per_client: Annotated[int, Field(ge=1, le=1000)] = 6
    # live points (dynamo-local, k8s) also stop growing at this burst length: Dynamo's planner judges throughput over 180 s (dynamo.md §3)
    live_time_budget_s: Annotated[float, Field(gt=0, le=86_400)] = 180.0

    def start_requests(self, concurrency: int) -> int:
        return min(self.max_requests, max(self.min_requests, self.requests_per_client * concurrency))

    @property
    def targets(self) -> dict[str, float]:
        return {"centre": self.rel_half_width_centre, "tail": self.rel_half_width_tail}


class SloSpec(_Strict):
    ttft_p99_ms: Pos | None = None
    itl_p99_ms: Pos | None = None


def _default_tps() -> list[Literal[1, 2, 4, 8, 16]]:
    return [1, 2, 4, 8]


class SearchSpace(_Strict):
    trials: Annotated[int, Field(gt=0, le=MAX_TRIALS)] = 100
    prefill_tp: list[Literal[1, 2, 4, 8, 16]] = Field(default_factory=_default_tps, min_length=1)
    decode_tp: list[Literal[1, 2, 4, 8, 16]] = Field(default_factory=_default_tps, min_length=1)
    aggregated_tp: list[Literal[1, 2, 4, 8, 16]] = Field(default_factory=_default_tps, min_length=1)
    allow_aggregated: bool = True
    max_prefill_workers: Annotated[int, Field(gt=0, le=MAX_WORKERS)] = 8
    max_decode_workers: Annotated[int, Field(gt=0, le=MAX_WORKERS)] = 16
    temperature: tuple[RouterWeight, RouterWeight] = (0.0, 1.0)
    overlap_weight: tuple[RouterWeight, RouterWeight] = (0.0, 2.0)  # ω = prefill-load scale
    overlap_credit: tuple[RouterWeight, RouterWeight] | None = None  # 1.3+ only; None = fixed at 1.0
    min_gpus: Annotated[int, Field(gt=0, le=MAX_NODES * MAX_GPUS_PER_NODE)] = 1  # fewer GPUs: not considered
    # discretize τ, ω (and credit) to this step; >= 1e-4 keeps the grid of a [0, ROUTER_MAX] range countable
    router_step: Annotated[float, Field(ge=1e-4, le=ROUTER_MAX)] | None = None
    concurrency: list[Concurrency] | None = Field(default=None, min_length=1)  # per-trial sweep; default: workload's
    requests_per_point: Requests | None = None  # burst per point during the search; default: workload's
    # which question a study answers: "target" = fixed load (at target_concurrency, which topology
    # gives the most tok/s per GPU within the SLO); "capacity" = fixed cluster (which split sustains the
    # highest load that still meets the SLO: goodput, found by bisection between grid points)
    operating_point: Literal["target", "saturated", "grid", "capacity"] = "target"
    target_concurrency: Concurrency | None = None
    capacity_steps: Annotated[int, Field(ge=0, le=8)] = (
        3  # bisection points between the grid's last pass and first miss
    )

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for name in ("temperature", "overlap_weight", "overlap_credit"):
            lo_hi = getattr(self, name)
            if lo_hi is not None and lo_hi[0] > lo_hi[1]:
                raise ValueError(f"{name}: lower bound {lo_hi[0]} exceeds upper bound {lo_hi[1]}")
        if self.operating_point == "target" and self.target_concurrency is None:
            raise ValueError("operating_point 'target' needs target_concurrency")
        if self.operating_point == "capacity" and self.concurrency is not None and len(self.concurrency) < 2:
            raise ValueError("operating_point 'capacity' needs at least two concurrency points to search between")
        if self.concurrency is not None and sorted(set(self.concurrency)) != list(self.concurrency):
            raise ValueError("concurrency must be strictly increasing without repeats")
        return self
