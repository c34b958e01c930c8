"""The Dynamo mocker's default polynomial timing, so the simulator can be held against a real
Dynamo + mocker stack (dynamo.md §5, ``lib/mocker/src/common/perf_model.rs``)."""

from __future__ import annotations

from dataclasses import dataclass

from autotune.profile import Profile

# dynamo.md §5: prefill_ms = 4.209989e-7·t² + 1.518344e-2·t + 16.50142, t = uncached prompt tokens
PREFILL_A, PREFILL_B, PREFILL_C = 4.209989e-7, 1.518344e-2, 16.50142
# dynamo.md §5: decode_step_ms = max(1, −25.74u² + 54.01u + 5.74), u = active KV / total KV
DECODE_A, DECODE_B, DECODE_C = -25.74, 54.01, 5.74


@dataclass(frozen=True)
class MockerTimer:
    speedup: float = 1.0

    def step_s(
        self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_ctx_tokens: int, kv_usage: float
    ) -> float:
        ms = 0.0
        if prefill_tokens > 0:
            t = prefill_tokens
            ms += PREFILL_A * t * t + PREFILL_B * t + PREFILL_C
        if decode_seqs > 0:
            u = kv_usage
            ms += max(1.0, DECODE_A * u * u + DECODE_B * u + DECODE_C)
        return ms / 1000.0 / self.speedup


class MockerPerfModel:
    """Every worker gets the same polynomial: the mocker ignores GPU, model and TP."""

    name = "mocker"

    def __init__(self, profile: Profile, speedup: float = 1.0) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be > 0")
        self.speedup = float(speedup)
        self._timer = MockerTimer(self.speedup)

    def timer(self, tp: int) -> MockerTimer:
        return self._timer

    def describe(self) -> dict[str, object]:
        return {"perf_model": "mocker", "speedup": self.speedup}
