"""The profile's ``workload.trace`` section: which file, how to read it, and how to replay it.

Kept apart from the reader so the profile schema can name the section without importing pandas.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from autotune.profile_types import MAX_TOKENS, NonNeg, Pos, _Strict

TraceFormat = Literal["mooncake", "aiperf", "autotune"]
TraceMode = Literal["timestamps", "closed_loop"]

# the block the hash ids of a Mooncake trace stand for: 512 tokens (perf_model.md §8)
MOONCAKE_BLOCK_TOKENS = 512
# formats without hash ids: the shared prefix is cut into blocks this long (the finest Dynamo uses, perf_model.md §7)
SYNTHETIC_BLOCK_TOKENS = 16


class TraceSpec(_Strict):
    """A trace to replay. ``path`` is relative to the profile file that names it (resolved at load)."""

    path: Annotated[str, Field(min_length=1)]
    format: TraceFormat = "mooncake"
    # timestamps: open loop, each request sent at its trace time / rate_scale; closed_loop: the trace's
    # requests in time order, by the point's C clients
    mode: TraceMode = "timestamps"
    rate_scale: Pos = 1.0  # 2.0 sends the trace twice as fast
    start_s: NonNeg = 0.0  # the slice of the trace replayed: [start_s, end_s) after its first request
    end_s: Pos | None = None
    # tokens per hash id (Mooncake: 512); formats without hash ids build their own blocks of this size
    block_size_tokens: Annotated[int, Field(gt=0, le=MAX_TOKENS)] | None = None
    # formats without hash ids (aiperf, autotune): the tokens a request shares with the others of its
    # prefix group (autotune: its ``template``; aiperf: one group)
    prefix_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 0

    @model_validator(mode="after")
    def _check(self) -> TraceSpec:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if self.mode == "closed_loop" and self.rate_scale != 1.0:
            raise ValueError("rate_scale applies to mode 'timestamps' (a closed loop sets its own pace)")
        if self.format == "mooncake" and self.prefix_tokens:
            raise ValueError("prefix_tokens is for formats without hash ids; a Mooncake trace shares by its hash_ids")
        return self

    @property
    def block_tokens(self) -> int:
        if self.block_size_tokens is not None:
            return self.block_size_tokens
        return MOONCAKE_BLOCK_TOKENS if self.format == "mooncake" else SYNTHETIC_BLOCK_TOKENS
