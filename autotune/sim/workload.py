"""Synthetic requests from a profile's workload: prefix groups, length distributions, arrivals.

Everything is drawn up front from one seeded generator, so a run is reproducible and the event
loop never touches the RNG for workload decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotune.profile import FixedDist, NormalDist, UniformDist, WorkloadSpec


def draw_lengths(dist: FixedDist | UniformDist | NormalDist, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(dist, FixedDist):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformDist):
        return rng.integers(dist.min, dist.max + 1, size=n)
    x = np.rint(rng.normal(dist.mean, dist.std, size=n)).astype(np.int64)
    return np.clip(x, dist.min, dist.max if dist.max is not None else np.iinfo(np.int64).max)


@dataclass(frozen=True)
class RateSegment:
    start_s: float
    rate_rps: float


@dataclass(frozen=True)
class ArrivalSchedule:
    """Piecewise-constant Poisson arrival rate (open loop): a base rate, a ramp, a spike."""

    segments: tuple[RateSegment, ...]

    @classmethod
    def from_workload(cls, w: WorkloadSpec) -> ArrivalSchedule:
        base = w.rate_rps or 1.0
        if w.spike is None:
            return cls((RateSegment(0.0, base),))
        s = w.spike
        return cls((RateSegment(0.0, base), RateSegment(s.start_s, s.peak_rate_rps),
                    RateSegment(s.start_s + s.duration_s, base)))

    def times(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` arrival times: exponential gaps at the rate in force (memoryless, so exact per segment)."""
        out = np.empty(n)
        t, seg_i = 0.0, 0
        segs = self.segments
        for i in range(n):
            while True:
                rate = segs[seg_i].rate_rps
                gap = rng.exponential(1.0 / rate)
                nxt = segs[seg_i + 1].start_s if seg_i + 1 < len(segs) else float("inf")
                if t + gap < nxt:
                    t += gap
                    break
                t, seg_i = nxt, seg_i + 1
            out[i] = t
        return out


@dataclass
class RequestSet:
    """Column arrays, one entry per request in issue order."""

    template: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None  # open loop only
    prefix_tokens: int
    block_size: int

    def __len__(self) -> int:
        return len(self.template)

    def block_hashes(self, rid: int) -> tuple[int, ...]:
        """Hashes of the request's full prompt blocks: shared while inside the template prefix."""
        bs = self.block_size
        n_full = int(self.input_tokens[rid]) // bs
        shared = min(n_full, self.prefix_tokens // bs)
        t = int(self.template[rid]) + 1
        return tuple([t * 1_000_003 + i for i in range(shared)] + [-(rid * 65_537 + i + 1) for i in range(shared, n_full)])


def make_requests(w: WorkloadSpec, n: int, block_size: int, seed: int, schedule: ArrivalSchedule | None = None) -> RequestSet:
    rng = np.random.default_rng(seed)
    template = rng.integers(0, w.templates, size=n)
    isl = draw_lengths(w.input_tokens, n, rng)
    isl = np.maximum(isl, w.prefix_tokens + 1) if w.prefix_tokens else isl
    osl = np.maximum(draw_lengths(w.output_tokens, n, rng), 1)
    arrivals = schedule.times(n, rng) if schedule is not None else None
    return RequestSet(template, isl, osl, arrivals, w.prefix_tokens, block_size)
