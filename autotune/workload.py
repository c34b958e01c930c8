"""One seeded request stream per load point, shared by the simulator and the live load burst.

A profile's workload becomes, for a seed: each request's template (shared prompt prefix), input
and output length, and (open loop) its arrival time; plus the warm-up and cool-down edges of the
measured window (``WorkloadSpec.measurement_edges``). The simulator runs this stream;
``loadgen.prompts`` renders the same stream as real prompts. So ``autotune validate`` compares the same workload on both sides by construction.

Everything is drawn up front from one generator, so a run is reproducible and the event loop
never touches the RNG for workload decisions. A workload with a ``trace`` replays it instead
(``autotune.traces``): the same requests for every seed, in the trace's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotune.profile import FixedDist, NormalDist, UniformDist, WorkloadSpec
from autotune.profile_schema import ExponentialThink, FixedThink, ThinkTime
from autotune.traces.trace import TraceBlocks, load_trace


def draw_lengths(dist: FixedDist | UniformDist | NormalDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer lengths from a profile length distribution (normal is clipped to [min, max])."""
    if isinstance(dist, FixedDist):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformDist):
        return rng.integers(dist.min, dist.max + 1, size=n)
    x = np.rint(rng.normal(dist.mean, dist.std, size=n)).astype(np.int64)
    return np.clip(x, dist.min, dist.max if dist.max is not None else np.iinfo(np.int64).max)


def mean_length(dist: FixedDist | UniformDist | NormalDist) -> float:
    if isinstance(dist, FixedDist):
        return float(dist.value)
    if isinstance(dist, UniformDist):
        return (dist.min + dist.max) / 2
    return float(dist.mean)


def draw_think_s(think: ThinkTime, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` client think times in seconds from a profile think-time distribution."""
    if isinstance(think, FixedThink):
        return np.full(n, think.value_ms / 1000)
    if isinstance(think, ExponentialThink):
        return rng.exponential(think.mean_ms / 1000, size=n)
    return rng.uniform(think.min_ms / 1000, think.max_ms / 1000, size=n)


@dataclass(frozen=True)
class MeanShape:
    """A workload's mean request, for sizing (client spread, open-loop capacity plans)."""

    input_tokens: float
    output_tokens: float
    prefix_tokens: float  # shared with other requests


def mean_shape(w: WorkloadSpec) -> MeanShape:
    if w.trace is not None:
        t = load_trace(w.trace)
        return MeanShape(float(t.input_tokens.mean()), float(t.output_tokens.mean()), t.mean_shared_tokens())
    return MeanShape(mean_length(w.input_tokens), mean_length(w.output_tokens), float(w.prefix_tokens))


@dataclass(frozen=True)
class RateSegment:
    start_s: float
    rate_rps: float


@dataclass(frozen=True)
class ArrivalSchedule:
    """Piecewise-constant Poisson arrival rate (open loop): a base rate, a ramp, a spike.

    Send times are fixed in advance, so a slow server cannot slow the offered load down (no
    coordinated omission).
    """

    segments: tuple[RateSegment, ...]

    @classmethod
    def from_workload(cls, w: WorkloadSpec) -> ArrivalSchedule:
        base = w.rate_rps or 1.0
        if w.spike is None:
            return cls((RateSegment(0.0, base),))
        s = w.spike
        return cls(
            (
                RateSegment(0.0, base),
                RateSegment(s.start_s, s.peak_rate_rps),
                RateSegment(s.start_s + s.duration_s, base),
            )
        )

    def times(self, n: int, rng: np.random.Generator, start_s: float = 0.0) -> np.ndarray:
        """``n`` arrival times after ``start_s``: exponential gaps at the rate in force (memoryless, so
        exact per segment, and a stream continued from its last arrival is the same process)."""
        out = np.empty(n)
        segs = self.segments
        t, seg_i = start_s, max(i for i, s in enumerate(segs) if s.start_s <= start_s or i == 0)
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


def trace_meta(w: WorkloadSpec, n: int) -> dict[str, int]:
    """What a point of ``n`` requests records about its trace: the slice's length and the passes over it."""
    if w.trace is None:
        return {}
    size = len(load_trace(w.trace))
    return {"trace_requests": size, "trace_passes": -(-n // size)}


@dataclass
class RequestStream:
    """Column arrays, one entry per request in issue order."""

    template: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None  # open loop only
    prefix_tokens: int
    blocks: TraceBlocks | None = None  # a trace's prefix sharing (then ``template`` is its prefix group)
    lead_tokens: int = 0  # the chat template's tokens before the user prompt: shared by every request
    think_s: np.ndarray | None = None  # closed loop: the client's pause after each request's response

    def __len__(self) -> int:
        return len(self.template)

    def joined(self, more: RequestStream) -> RequestStream:
        """This stream followed by its continuation ``more`` (``request_stream`` part k, or the trace's
        next window): request ids carry on, so request i is the same request in the joined stream."""
        cat = np.concatenate

        def both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            assert (a is None) == (b is None), "a continuation has the same columns as its stream"
            return None if a is None or b is None else cat([a, b])

        blocks = None
        if self.blocks is not None or more.blocks is not None:
            assert self.blocks is not None and more.blocks is not None and self.blocks.trace is more.blocks.trace
            b0, b1 = self.blocks, more.blocks
            blocks = TraceBlocks(b0.trace, cat([b0.index, b1.index]), cat([b0.passes, b1.passes]))
        return RequestStream(
            cat([self.template, more.template]),
            cat([self.input_tokens, more.input_tokens]),
            cat([self.output_tokens, more.output_tokens]),
            both(self.arrival_s, more.arrival_s),
            self.prefix_tokens,
            blocks=blocks,
            lead_tokens=self.lead_tokens,
            think_s=both(self.think_s, more.think_s),
        )

    def block_hashes(self, rid: int, block_size: int) -> tuple[int, ...]:
        """Hashes of the request's full prompt blocks: shared by all requests inside the chat template's
        leading tokens, by the template's requests inside its prefix, the request's own after (a trace:
        shared while inside the blocks its hash ids share)."""
        if self.blocks is not None:
            return self.blocks.block_hashes(rid, block_size)
        n_full = int(self.input_tokens[rid]) // block_size
        common = min(n_full, self.lead_tokens // block_size)
        shared = min(n_full, (self.lead_tokens + self.prefix_tokens) // block_size)
        t = int(self.template[rid]) + 1
        return tuple(
            list(range(common))
            + [t * 1_000_003 + i for i in range(common, shared)]
            + [-(rid * 65_537 + i + 1) for i in range(shared, n_full)]
        )


def request_stream(
    w: WorkloadSpec,
    n: int,
    seed: int,
    schedule: ArrivalSchedule | None = None,
    *,
    part: int = 0,
    after_s: float = 0.0,
    first_index: int = 0,
) -> RequestStream:
    """The ``n`` requests of one point for ``seed``; arrival times when ``schedule`` is given (open loop).

    Inputs are at least one token longer than the shared prefix and the chat template's tokens, so
    every request has a suffix of its own (a prompt that is all prefix would be a full cache hit on
    any worker). Think times come from a generator of their own, so a profile without them draws
    exactly the stream it drew before they existed.

    A point that runs longer (a live burst, a growing simulated point) continues its stream rather
    than starting a new one: ``part`` k > 0 is the k-th continuation, drawn from its own generator
    keyed by (seed, k) so that part 0 is the same whatever follows, with arrivals continuing after
    ``after_s`` (``RequestStream.joined``).

    A trace replays requests ``first_index`` .. ``first_index + n`` (looping, ``autotune.traces.trace``),
    at the trace's times in its ``timestamps`` mode unless ``schedule`` gives others.
    """
    rng = np.random.default_rng(seed if part == 0 else [seed, part])
    if w.trace is not None:
        win = load_trace(w.trace).window(first_index, n)
        timed = win.arrival_s if w.trace.mode == "timestamps" else None
        sent = schedule.times(n, rng, after_s) if schedule is not None else timed
        return RequestStream(win.template, win.input_tokens, win.output_tokens, sent, 0, blocks=win.blocks())
    template = rng.integers(0, w.templates, size=n)
    isl = draw_lengths(w.input_tokens, n, rng)
    isl = np.maximum(isl, w.fixed_tokens + 1) if w.fixed_tokens else isl
    osl = np.maximum(draw_lengths(w.output_tokens, n, rng), 1)
    arrivals = schedule.times(n, rng, after_s) if schedule is not None else None
    think = None
    if w.think_time is not None and schedule is None:
        think = draw_think_s(w.think_time, n, np.random.default_rng([seed, 7877] if part == 0 else [seed, 7877, part]))
    return RequestStream(
        template, isl, osl, arrivals, w.prefix_tokens, lead_tokens=w.chat_template_tokens_before, think_s=think
    )
