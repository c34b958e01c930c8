"""The serving sections of a profile: the Dynamo deployment, the engine and the P→D KV transfer.

Split from ``profile_schema`` (the hardware, model, workload and search sections) because these are
the knobs of the software stack; ``profile_schema`` and ``profile`` re-export every name.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from autotune.profile_types import MAX_CONCURRENCY, NonNeg, PosInt, Tokens, _Strict


class SecretRef(_Strict):
    """An argument value kept in a Kubernetes Secret, so no file autotune writes holds it.

    In a DGD the container gets ``env_name`` from ``secretKeyRef`` and the argument is ``$(env_name)``
    (Kubernetes expands it); ``dynamo-local`` reads the value from the environment variable ``env_name``.
    """

    secret: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]  # DNS-1123 subdomain
    key: Annotated[str, Field(pattern=r"^[-._A-Za-z0-9]{1,253}$")]

    @property
    def env_name(self) -> str:
        """``AUTOTUNE_SECRET_<SECRET>_<KEY>``, upper case, every other character ``_``."""
        return re.sub(r"[^A-Z0-9]", "_", f"AUTOTUNE_SECRET_{self.secret}_{self.key}".upper())

    def __str__(self) -> str:
        return f"$({self.env_name})"


ExtraArg = Union[str, SecretRef]


class DynamoSpec(_Strict):
    version: Annotated[str, Field(pattern=r"^\d+\.\d+(\.\d+)?$")] = "1.6.1"
    framework: Literal["vllm", "sglang", "trtllm"] = "vllm"
    image: str = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1"
    model_path: str | None = None  # HF id or path inside the image; defaults to the model name
    namespace: str = "default"
    secrets: list[str] = Field(default_factory=list)  # envFromSecret names (e.g. hf-token)
    # a value may be a secret reference {secret: NAME, key: KEY} (SecretRef; README: Secrets)
    extra_worker_args: list[ExtraArg] = Field(default_factory=list)
    extra_frontend_args: list[ExtraArg] = Field(default_factory=list)
    frontend_port: Annotated[int, Field(gt=0, lt=65536)] = 8000
    # frontend work before routing (HTTP, tokenisation, model lookup); measured 4.5 ms on a local
    # Dynamo 1.6.1 frontend at C=1 (autotune validate); BLIS fits ~15.6 ms with HTTP (perf_model.md §4)
    frontend_overhead_ms: Annotated[float, Field(ge=0)] = 4.5
    # the random part of that overhead (exponential, this mean; the rest is fixed). Without it a
    # closed loop with fixed lengths phase-locks (requests admitted in lockstep), which no real
    # frontend holds. Spread of the route delay measured on the local 1.6.1 stack: ~0.7 ms at C=1,
    # 1.5-3 ms at C=8 (autotune validate fits it per run)
    frontend_jitter_ms: NonNeg = 1.0
    # The frontend's per-request CPU work as a queue (autotune/sim/frontend.py): ``frontend_workers``
    # servers, each request needing frontend_request_ms + frontend_input_token_us per prompt token before
    # routing, and frontend_output_token_us per streamed token. 0 workers = no queue: the frontend is the
    # pure delay above (the simulator before issue 12). A GPU cluster's frontend costs are not known
    # (the paper reports none; paper profiles set an inferred value): unset, there is no queue. When the
    # simulator stands in for the local stack (validate) every unset knob takes the host's measured cost
    # (autotune/host_costs.py, docs/host-capacity.md).
    frontend_workers: Annotated[int, Field(ge=0, le=1024)] = 0
    frontend_request_ms: NonNeg = 0.0
    frontend_input_token_us: NonNeg = 0.0
    frontend_output_token_us: NonNeg = 0.0
    # host work per prompt token that frontend_overhead_ms does not hold (it was measured on token-id
    # prompts): tokenising text and applying the chat template. Added to the route delay on top of the
    # overhead, as a pure delay or, with frontend_workers > 0, as work on the frontend's servers
    frontend_tokenize_token_us: NonNeg = 0.0
    # per-request work after the last token (closing the stream, usage, the client's side), same servers
    frontend_response_ms: NonNeg = 0.0
    # the frontend's own work to hand a disaggregated request from its prefill to its decode worker (the
    # second leg: a second routing decision and request), on the same servers
    frontend_handoff_ms: NonNeg = 0.0
    # mean delay each streamed token picks up between engine and client (autotune/sim/delivery.py):
    # widens client-side ITL percentiles, keeps the mean; 0 = step times as they are. The local 2-core
    # stack shows 0.5-1.5 ms (validate fits it per run)
    token_jitter_ms: NonNeg = 0.0
    # router busy thresholds (1.6.1: unset = disabled, dynamo.md §2); all workers busy -> HTTP 503
    busy_decode_blocks_frac: Annotated[float, Field(gt=0)] | None = None
    busy_prefill_tokens: PosInt | None = None

    @model_validator(mode="after")
    def _secret_refs_distinct(self) -> DynamoSpec:
        seen: dict[str, SecretRef] = {}
        for a in self.secret_refs():
            other = seen.setdefault(a.env_name, a)
            if other != a:
                raise ValueError(
                    f"secret references {other.secret}/{other.key} and {a.secret}/{a.key} map to one "
                    f"variable {a.env_name}; rename one"
                )
        return self

    @model_validator(mode="after")
    def _jitter_within_overhead(self) -> DynamoSpec:
        if self.frontend_jitter_ms > self.frontend_overhead_ms:
            raise ValueError(
                f"frontend_jitter_ms ({self.frontend_jitter_ms}) must not exceed "
                f"frontend_overhead_ms ({self.frontend_overhead_ms})"
            )
        return self

    def secret_refs(self) -> list[SecretRef]:
        """Every secret reference in the extra arguments, in order, without repeats."""
        out: list[SecretRef] = []
        for a in [*self.extra_worker_args, *self.extra_frontend_args]:
            if isinstance(a, SecretRef) and a not in out:
                out.append(a)
        return out

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)


class EngineSpec(_Strict):
    max_num_seqs: Annotated[int, Field(gt=0, le=MAX_CONCURRENCY)] = 256
    max_num_batched_tokens: Tokens = 8192
    block_size: Annotated[int, Field(gt=0, le=4096)] = 64
    gpu_memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    reserve_gb: NonNeg = 4.0  # activations, CUDA graphs, NCCL buffers (perf_model.md §2: 4 GB/GPU (e))
    min_kv_tokens: Tokens = 4096  # a worker below this KV pool is infeasible
    # KV pool of each worker in blocks of block_size, instead of the memory computation (vLLM's
    # num_gpu_blocks_override, the mocker's --num-gpu-blocks-override); unset = from HBM and weights
    num_gpu_blocks_override: Annotated[int, Field(gt=0, le=1 << 30)] | None = None
    preemption: Literal["recompute"] = "recompute"
    # per-request scheduling work on a worker outside its GPU steps, one request at a time (a queue per
    # worker; 0 = none). Local stack: autotune/host_costs.py
    request_cost_ms: NonNeg = 0.0


class KvTransferSpec(_Strict):
    setup_ms: NonNeg = 3.0  # perf_model.md §3: setup 1-5 ms (e)
    handover_ms: NonNeg = 0.0  # perf_model.md §3: orchestration hand-over 20-60 ms seen with vLLM+NIXL (e)
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.7  # perf_model.md §3: eta 0.5-0.8 inter-node (e)
    # effective P->D bandwidth of one transfer, GB/s, within and across nodes (the mocker's
    # --kv-transfer-bandwidth); unset = the cluster's link bandwidth x efficiency
    bandwidth_gb_s: Annotated[float, Field(gt=0, le=1e6)] | None = None
    # KV bytes one prompt token moves, whole model (the mocker's --kv-bytes-per-token); unset = from
    # the model: 2 x layers x kv_heads x head_dim x kv_dtype bytes
    bytes_per_token: Annotated[float, Field(gt=0, le=1e9)] | None = None
    # the prefill worker's per-request hand-off work, serialised on it with its intake (request_cost_ms;
    # 0 = none). Local stack: autotune/host_costs.py
    handoff_cost_ms: NonNeg = 0.0
    # transfer set-ups a prefill worker runs at once (a queue of setup_ms each); unset = no limit, set-up
    # is a pure delay. No source gives the limit (perf_model.md §3 gives only the 1-5 ms duration)
    setup_slots: Annotated[int, Field(gt=0, le=1024)] | None = None


class PerfSpec(_Strict):
    """Overrides of the roofline's per-framework constants (``catalog/frameworks.yaml``) for this deployment.

    Unset fields keep the catalog's value. ``autotune calibrate`` writes the ones it fits from live runs
    (docs/calibrate.md), so a profile that ``extends:`` the original carries the measured deployment.
    """

    prefill_mfu: Annotated[float, Field(gt=0, le=1)] | None = None
    decode_mfu: Annotated[float, Field(gt=0, le=1)] | None = None
    decode_mbu: Annotated[float, Field(gt=0, le=1)] | None = None
    step_overhead_ms: NonNeg | None = None
    per_layer_overhead_us: NonNeg | None = None
    per_seq_overhead_us: NonNeg | None = None

    def overrides(self) -> dict[str, float]:
        """The fields set, by their catalog name."""
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}
