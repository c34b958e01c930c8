"""The small interface the simulator and PoA-hat talk to: a step-time model per worker."""

from __future__ import annotations

from typing import Protocol


class StepTimer(Protocol):
    """Step time of one worker (GPU × model × TP × dtype)."""

    def step_s(
        self,
        prefill_tokens: int,
        prefill_attn: float,
        decode_seqs: int,
        decode_ctx_tokens: int,
        kv_usage: float,
    ) -> float:
        """Seconds for one step.

        prefill_tokens: new (uncached) prompt tokens computed this step, over all prefill chunks;
        prefill_attn: Σ n·(p + n/2) over chunks (n new, p already-present tokens) — attention work;
        decode_seqs / decode_ctx_tokens: sequences decoding one token and their summed context;
        kv_usage: fraction of the worker's KV blocks in use (the mocker's timing needs it).
        """
        ...


class PerfModel(Protocol):
    name: str

    def timer(self, tp: int) -> StepTimer: ...

    def describe(self) -> dict[str, object]: ...


def prefill_attn_work(new_tokens: int, cached_tokens: int) -> float:
    """Σ n·(p + n/2) term of one prefill chunk (perf_model.md §3)."""
    return new_tokens * (cached_tokens + new_tokens / 2)
