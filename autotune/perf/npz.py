"""Perf model ``mocker-npz``: step times read from the mocker's NPZ timing tables, priced as the mocker prices them.

Dynamo 1.6.1's mocker with ``--planner-profile-data FILE.npz`` interpolates these tables
(``lib/mocker/src/common/perf_model.rs``); reading them the same way lets the simulator run with
exactly the timing the live mockers use (``autotune validate``). ``dynamo.mocker_timing`` writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotune.profile import Profile

NPZ_KEYS = ("prefill_isl", "prefill_ttft_ms", "decode_active_kv_tokens", "decode_context_length", "decode_itl")


@dataclass(frozen=True)
class NpzTables:
    prefill_isl: np.ndarray
    prefill_ttft_ms: np.ndarray
    decode_active_kv_tokens: np.ndarray
    decode_context_length: np.ndarray
    decode_itl: np.ndarray  # shape (len(kv), len(ctx))

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The ignore: mypy matches the unpacked dict against savez's allow_pickle: bool too.
        np.savez(
            path,
            **{k: np.asarray(getattr(self, k), dtype=np.float64) for k in NPZ_KEYS},  # type: ignore[arg-type]
        )
        return path

    @classmethod
    def load(cls, path: Path) -> NpzTables:
        with np.load(path) as z:
            return cls(*(np.asarray(z[k], dtype=np.float64) for k in NPZ_KEYS))

    def prefill_ms(self, tokens: float) -> float:
        """The mocker's prefill time for ``tokens`` new tokens in one step (0 for none)."""
        if tokens <= 0:
            return 0.0
        return max(0.0, _interp1(self.prefill_isl, self.prefill_ttft_ms, float(tokens)))

    def decode_ms(self, seqs: int, ctx_tokens: float) -> float:
        """The mocker's decode step time for ``seqs`` sequences holding ``ctx_tokens`` in all."""
        if seqs <= 0:
            return 0.0
        mean_ctx = ctx_tokens / seqs
        v = _interp2(
            self.decode_active_kv_tokens,
            self.decode_context_length,
            self.decode_itl,
            float(ctx_tokens),
            float(mean_ctx),
        )
        return max(1.0, v)


def _interp1(x: np.ndarray, y: np.ndarray, q: float) -> float:
    """Linear interpolation that extrapolates from the end segments (ndarray_interp ``Linear``)."""
    i = int(np.clip(np.searchsorted(x, q) - 1, 0, len(x) - 2))
    x0, x1 = x[i], x[i + 1]
    return float(y[i] + (y[i + 1] - y[i]) * (q - x0) / (x1 - x0))


def _interp2(x: np.ndarray, y: np.ndarray, z: np.ndarray, qx: float, qy: float) -> float:
    """Bilinear interpolation that extrapolates from the edge cells (ndarray_interp ``Bilinear``)."""
    i = int(np.clip(np.searchsorted(x, qx) - 1, 0, len(x) - 2))
    j = int(np.clip(np.searchsorted(y, qy) - 1, 0, len(y) - 2))
    tx = (qx - x[i]) / (x[i + 1] - x[i])
    ty = (qy - y[j]) / (y[j + 1] - y[j])
    z00, z10, z01, z11 = z[i, j], z[i + 1, j], z[i, j + 1], z[i + 1, j + 1]
    return float(z00 * (1 - tx) * (1 - ty) + z10 * tx * (1 - ty) + z01 * (1 - tx) * ty + z11 * tx * ty)


class NpzTimer:
    """``StepTimer`` that prices a step exactly as the mocker does from its NPZ tables."""

    def __init__(self, tables: NpzTables, speedup: float) -> None:
        self.tables, self.speedup = tables, speedup

    def step_s(
        self, prefill_tokens: int, prefill_attn: float, decode_seqs: int, decode_ctx_tokens: int, kv_usage: float
    ) -> float:
        ms = self.tables.prefill_ms(prefill_tokens) + self.tables.decode_ms(decode_seqs, decode_ctx_tokens)
        return ms / 1e3 / self.speedup


class NpzPerfModel:
    """Perf model ``mocker-npz``: ``tables`` maps TP degree to an NPZ written by ``plan_timing``."""

    name = "mocker-npz"

    def __init__(self, profile: Profile, tables: dict[int, str] | None = None, speedup: float = 1.0) -> None:
        if not tables:
            raise ValueError("mocker-npz needs tables={tp: path}")
        if speedup <= 0 or not math.isfinite(speedup):
            raise ValueError("speedup must be > 0")
        self.paths = {int(tp): str(p) for tp, p in tables.items()}
        self.speedup = float(speedup)
        self._timers: dict[int, NpzTimer] = {}

    def timer(self, tp: int) -> NpzTimer:
        if tp not in self._timers:
            if tp not in self.paths:
                raise ValueError(f"mocker-npz has no table for TP{tp}")
            self._timers[tp] = NpzTimer(NpzTables.load(Path(self.paths[tp])), self.speedup)
        return self._timers[tp]

    def describe(self) -> dict[str, object]:
        return {"perf_model": self.name, "speedup": self.speedup, "tables": self.paths}
