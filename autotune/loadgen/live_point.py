"""One live point's load: the seeded request stream, sent until the point's figures are precise enough.

A live point (dynamo-local, k8s) starts with the requests it is given, like a simulated one. While
the burst runs, shortly before the planned requests run out, the run-length rule the simulator uses
(``autotune.runlength``) judges the requests completed so far, through the same ``metrics.summarize``:
if a headline figure is still wider than its target (or the steady state has not been reached), the
burst *continues its stream* (``autotune.workload.request_stream`` part k): the clients stay busy
and the caches warm, so the steady state carries on instead of restarting with a new first wave. It
stops growing when the targets are met, at ``measurement.max_requests``, or when the next step would
pass ``measurement.live_time_budget_s``; the point records which (``finish``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, overload

import numpy as np

from autotune.loadgen.client import BurstResult, Growth, RequestRecord
from autotune.loadgen.frame import client_frame, itl_samples
from autotune.loadgen.prompts import Api, RequestSpec, Vocabulary, plan_burst, render_bodies, render_body
from autotune.metrics import MIN_PER_BATCH, summarize
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.runlength import FIXED, WALL_BOUND, live_extension, precision, run_meta
from autotune.workload import trace_meta


class LazyBodies(Sequence[bytes]):
    """Request bodies rendered when sent, not all at once: a continuation may hold thousands, and
    rendering them in one go would hold the client's event loop while it times streams."""

    def __init__(self, specs: Sequence[RequestSpec], *, api: Api, model: str, vocab: Vocabulary) -> None:
        self.specs, self.api, self.model, self.vocab = specs, api, model, vocab

    def __len__(self) -> int:
        return len(self.specs)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(i, slice):
            return LazyBodies(self.specs[i], api=self.api, model=self.model, vocab=self.vocab)
        return render_body(self.specs[i], api=self.api, model=self.model, vocab=self.vocab)


def completed_prefix(records: Sequence[RequestRecord]) -> int:
    """How many requests, in send order, precede the first one not yet complete (in flight or unsent)."""
    for i, r in enumerate(records):
        if r.status == "pending":
            return i
    return len(records)


class LivePoint:
    """The stream of one live point and the decisions that extend it (``grow`` runs in the burst's thread)."""

    def __init__(
        self,
        profile: Profile,
        concurrency: int,
        *,
        seed: int,
        requests: int,
        vocab: Vocabulary,
        api: Api,
        model: str,
        gpus: int,
    ) -> None:
        w, self.meas = profile.workload, profile.measurement
        self.profile, self.concurrency, self.seed, self.gpus = profile, concurrency, seed, gpus
        self.api, self.model, self.vocab = api, model, vocab
        plan = plan_burst(w, requests, vocab=vocab, api=api, seed=seed, profile_seed=profile.seed)
        self.specs: list[RequestSpec] = list(plan.specs)
        self.arrivals_s = plan.arrivals_s
        self.last_arrival_s = float(plan.arrivals_s[-1]) if plan.arrivals_s is not None and requests else 0.0
        self.bodies = render_bodies(plan.specs, api=api, model=model, vocab=vocab)
        self.adaptive = self.meas.adaptive and w.spike is None
        self.parts = 1
        self.stop_reason = "" if self.adaptive else FIXED
        self.checks: list[dict[str, Any]] = []
        closed = plan.arrivals_s is None
        # judge early enough that the clients do not run dry while it decides
        self.lookahead = max(2 * concurrency if closed else 0, requests // 3, MIN_PER_BATCH)
        self.min_step = max(concurrency if closed else 0, requests // 8, MIN_PER_BATCH)

    @property
    def closed_loop(self) -> bool:
        return self.arrivals_s is None

    def judge(self, records: Sequence[RequestRecord]) -> PointRun:
        """The point so far: the requests before the first incomplete one, as a ``PointRun``."""
        k = completed_prefix(records)
        done = list(records[:k])
        itl, itl_time_s = itl_samples(done)
        return PointRun(
            concurrency=self.concurrency if self.closed_loop else -1,
            requests=client_frame(done, self.specs[:k], np.ones(k, dtype=bool)),
            decisions={},
            itl_ms=itl,
            itl_weight=np.ones_like(itl),
            window_s=(0.0, 0.0),
            gpus=self.gpus,
            backend="live",
            itl_time_s=itl_time_s,
        )

    def grow(self, records: list[RequestRecord]) -> Growth:
        """The burst's checkpoint: more of the stream, or nothing (``stop_reason`` says why)."""
        t = time.perf_counter()
        run = self.judge(records)
        p = precision(summarize(run, level=self.meas.ci_level), self.meas)
        sent = [r.send_s for r in records if r.send_s == r.send_s]
        ext = live_extension(
            p,
            seen=len(run.requests),
            done=sum(r.status != "pending" for r in records),
            planned=len(self.specs),
            elapsed_s=max(sent) if sent else 0.0,
            budget_s=self.meas.live_time_budget_s,
            min_step=self.min_step,
            meas=self.meas,
        )
        self.checks.append(
            {
                "judged_requests": len(run.requests),
                "limiting_figure": p.figure,
                "precision_ratio": p.ratio,
                "steady": p.steady,
                "more": ext.requests,
                "check_s": round(time.perf_counter() - t, 4),
            }
        )
        if not ext.requests:
            self.stop_reason = ext.stop_reason
            return Growth()
        w = self.profile.workload
        plan = plan_burst(
            w,
            ext.requests,
            seed=self.seed,
            profile_seed=self.profile.seed,
            part=self.parts,
            first_index=len(self.specs),
            after_s=self.last_arrival_s,
            vocab=self.vocab,
            api=self.api,
        )
        self.parts += 1
        self.specs.extend(plan.specs)
        if plan.arrivals_s is not None:
            self.last_arrival_s = float(plan.arrivals_s[-1])
        return Growth(LazyBodies(plan.specs, api=self.api, model=self.model, vocab=self.vocab), plan.arrivals_s)

    def think_time(self) -> Callable[[int], float] | None:
        """The clients' pause after request i (workload.think_time), or None: back to back."""
        if self.profile.workload.think_time is None or not self.closed_loop:
            return None
        return lambda i: self.specs[i].think_s

    def grow_callback(self) -> Any:
        """What the burst calls to extend itself (None: the point has a fixed length)."""
        return self.grow if self.adaptive else None

    def sent_specs(self, burst: BurstResult) -> list[RequestSpec]:
        return self.specs[: len(burst.records)]

    def edges(self, burst: BurstResult) -> tuple[int, int]:
        """Warm-up and cool-down requests of the point as it ran (the profile's, or their share)."""
        return self.profile.workload.measurement_edges(len(burst.records))

    def finish(self, run: PointRun, burst: BurstResult) -> PointRun:
        """Summarise the finished point (its ``summary``) and record how long it ran and why (``meta``)."""
        run.summary = summarize(run, level=self.meas.ci_level)
        reason = WALL_BOUND if burst.wall_bound else (self.stop_reason or FIXED)
        run.meta.update(run_meta(precision(run.summary, self.meas), len(burst.records), reason))
        run.meta.update(
            time_budget_s=self.meas.live_time_budget_s,
            stream_parts=self.parts,
            client_stalled_s=round(burst.stalled_s, 4),
            run_length_checks=self.checks,
        )
        run.meta.update(trace_meta(self.profile.workload, len(burst.records)))
        return run
