"""Worker timing for the mocker: our perf model tabulated in the mocker's NPZ format.

The mocker's default timing is one polynomial for every worker, so a TP-4 and a TP-8 worker would
be equally fast. ``--planner-profile-data FILE.npz`` switches it to interpolated tables (Dynamo
1.6.1, ``dynamo/mocker/utils/planner_profiler_perf_data_converter.py`` and ``lib/mocker/src/
common/perf_model.rs``):

* ``prefill_isl`` (1-D, tokens) → ``prefill_ttft_ms``: linear interpolation with extrapolation,
  queried with the step's total new prompt tokens (batch × (ISL − cached));
* ``decode_active_kv_tokens`` × ``decode_context_length`` → ``decode_itl`` (ms): bilinear with
  extrapolation, queried with the batch's summed context and its mean; at least 1 ms;
* a mixed step costs prefill + decode; everything is divided by ``--speedup-ratio``.

We fill the tables from a perf model's ``StepTimer`` per TP degree, one file per TP. Known
approximations (the tables' inputs are coarser than our ``step_s``): prefill attention is
priced as if the step's tokens were one uncached prompt (Σ n·(p+n/2) with p = 0), and a mixed
step is the sum of its parts rather than the roofline's max(compute, memory).

``autotune.perf.npz`` (perf model ``mocker-npz``) reads the same files the same way, so
the simulator can be run with exactly the timing the live mockers use (``autotune validate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune import perf
from autotune.feasibility import kv_capacity_tokens, max_request_tokens
from autotune.perf.npz import NpzTables
from autotune.profile import Profile
from autotune.topology import Topology


def _grid(lo: float, hi: float, n: int) -> np.ndarray:
    """Geometric and linear points merged: dense where step time bends, covering the whole range."""
    hi = max(hi, lo + 1)
    g = np.unique(np.round(np.concatenate([np.geomspace(lo, hi, n), np.linspace(lo, hi, n)]), 3))
    return g.astype(np.float64)


def tabulate(
    timer: perf.StepTimer, *, max_prefill_tokens: int, kv_capacity: int, max_context: int, resolution: int = 40
) -> NpzTables:
    """Mocker tables for one worker from a ``StepTimer`` (see module docstring for the mapping)."""
    isl = _grid(1, max_prefill_tokens, resolution)
    pre = np.array([timer.step_s(int(t), t * t / 2.0, 0, 0, 0.0) * 1e3 for t in isl])
    kv = np.concatenate([[0.0], _grid(1, kv_capacity, resolution)])
    ctx = _grid(1, max(2, max_context), resolution)
    itl = np.empty((len(kv), len(ctx)))
    for a, k in enumerate(kv):
        for b, c in enumerate(ctx):
            seqs = max(1, int(round(k / c))) if k > 0 else 1
            itl[a, b] = timer.step_s(0, 0.0, seqs, int(k), min(1.0, k / kv_capacity)) * 1e3
    tables = NpzTables(isl, pre, kv, ctx, itl)
    if not (np.all(np.isfinite(pre)) and np.all(np.isfinite(itl)) and pre.min() >= 0 and itl.min() >= 0):
        raise ValueError("perf model produced non-finite or negative step times")
    return tables


@dataclass
class WorkerTiming:
    """Mocker options of one worker role."""

    num_gpu_blocks: int
    npz: Path | None  # None: the mocker's default polynomial


@dataclass
class TimingPlan:
    source: str  # "npz:<perf model>" or "mocker-default"
    speedup: float
    roles: dict[tuple[str, int], WorkerTiming] = field(default_factory=dict)  # (role, tp) ->
    note: str = ""

    def sim_backend_options(self) -> tuple[str, dict[str, Any]]:
        """``SimBackend`` perf model name and options that reproduce this timing."""
        if self.source == "mocker-default":
            return "mocker", {"speedup": self.speedup}
        tables = {tp: str(w.npz) for (_, tp), w in self.roles.items() if w.npz is not None}
        return "mocker-npz", {"tables": tables, "speedup": self.speedup}

    def describe(self) -> dict[str, Any]:
        return {"timing": self.source, "speedup_ratio": self.speedup, "timing_note": self.note}


def plan_timing(
    profile: Profile, topology: Topology, out_dir: Path, *, timing: str = "roofline", speedup: float = 1.0
) -> TimingPlan:
    """Tables per (role, TP) from perf model ``timing``; the mocker default if that is impossible.

    ``timing="mocker"`` asks for the mocker's default polynomial directly. KV pool sizes come from
    the profile (``kv_capacity_tokens``) in both cases, so preemption happens where it would.
    """
    if speedup <= 0:
        raise ValueError("speedup must be > 0")
    bs = profile.engine.block_size
    plan = TimingPlan("mocker-default" if timing == "mocker" else f"npz:{timing}", speedup)
    blocks: dict[tuple[str, int], int] = {}
    for role, tp in sorted(set(topology.worker_tps())):
        cap = kv_capacity_tokens(profile, tp)
        override = profile.engine.num_gpu_blocks_override
        blocks[(role, tp)] = override if override and cap else max(64, min(cap // bs, 4_000_000))
    if timing != "mocker":
        try:
            model = perf.get_perf_model(timing, profile)
            by_tp: dict[int, Path] = {}
            for (role, tp), nb in blocks.items():
                if tp not in by_tp:
                    tables = tabulate(
                        model.timer(tp),
                        max_prefill_tokens=profile.engine.max_num_batched_tokens,
                        kv_capacity=nb * bs,
                        max_context=min(nb * bs, max(4 * max_request_tokens(profile), 8192)),
                    )
                    by_tp[tp] = tables.save(Path(out_dir) / f"timing_tp{tp}.npz")
                plan.roles[(role, tp)] = WorkerTiming(nb, by_tp[tp])
            plan.note = f"tables from perf model {timing!r}, one per TP ({', '.join(map(str, sorted(by_tp)))})"
            return plan
        except Exception as exc:  # noqa: BLE001 - any failure means: fall back, and say why
            plan = TimingPlan(
                "mocker-default",
                speedup,
                note=f"perf model {timing!r} could not be tabulated ({exc}); mocker default timing",
            )
    else:
        plan.note = "mocker default polynomial (same for every GPU, model and TP)"
    plan.roles = {k: WorkerTiming(nb, None) for k, nb in blocks.items()}
    return plan
