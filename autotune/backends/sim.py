"""The embedded default backend: each trial is a discrete-event simulation (``autotune.sim``)."""

from __future__ import annotations

import logging
from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.errors import InfeasibleError
from autotune.feasibility import check_feasibility
from autotune.metrics import summarize
from autotune.perf import PerfModel, get_perf_model, prefill_attn_work
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.runlength import MAX_REQUESTS, TARGETS_MET, precision, run_meta, sim_next_requests
from autotune.sim.cluster import ClusterSim, Controller
from autotune.topology import RouterSettings, Topology
from autotune.workload import ArrivalSchedule, RequestStream, mean_shape, request_stream, trace_meta

log = logging.getLogger("autotune.sim")

# requests in each continuation of a growing point's stream (drawn as the run reaches them)
STREAM_PART = 1024


class SimDeployment(Deployment):
    def __init__(self, profile: Profile, topology: Topology, perf: PerfModel) -> None:
        self.profile, self.topology, self.perf = profile, topology, perf
        self.feas = check_feasibility(topology, profile)
        if not self.feas.ok:
            raise InfeasibleError(f"topology {topology.shape()}: {self.feas.reason}")

    def set_router(self, router: RouterSettings) -> None:
        self.topology = self.topology.with_router(router)

    def run_point(
        self,
        concurrency: int,
        *,
        seed: int,
        requests: int | None = None,
        controller: Controller | None = None,
        schedule: ArrivalSchedule | None = None,
    ) -> PointRun:
        """One load point. ``requests`` (or the profile's count) is where it starts: a stationary point
        keeps growing (×1.5 to ×4 a step, ``sim_next_requests``) until every headline figure meets the
        profile's precision target or ``measurement.max_requests`` is reached; ``meta`` says which. It
        grows by continuing its run on the continuation of its request stream: the run pauses once its
        first n requests are done, is judged on them, and carries on to the next n with the clients
        still busy (no drain, nothing re-simulated: docs/measurement.md). Scheduled and controlled runs
        (ramps, spikes) have a fixed length: their time structure is the experiment."""
        w, meas = self.profile.workload, self.profile.measurement
        n = requests or w.requests_per_point
        adaptive = meas.adaptive and controller is None and schedule is None and w.spike is None
        if not adaptive:
            return self._run_once(concurrency, seed, n, controller, schedule)
        sim, open_loop = self._start(concurrency, seed, n, None, None, continuable=True)
        while True:
            run = self._result(sim, concurrency, n, open_loop)
            run.summary = summarize(run, level=meas.ci_level)
            p = precision(run.summary, meas)
            if p.met or n >= meas.max_requests:
                run.meta.update(run_meta(p, n, TARGETS_MET if p.met else MAX_REQUESTS))
                if not p.met:
                    log.info(
                        "C=%d: %s still %.1fx its precision target after %d requests (measurement.max_requests)",
                        concurrency,
                        p.figure or "the warm-up",
                        p.ratio,
                        n,
                    )
                return run
            n = sim_next_requests(p, n, meas)
            sim.extend(n)

    def _run_once(
        self, concurrency: int, seed: int, n: int, controller: Controller | None, schedule: ArrivalSchedule | None
    ) -> PointRun:
        """A run of ``n`` requests to its end (the clients stop, the cluster drains)."""
        sim, open_loop = self._start(concurrency, seed, n, controller, schedule, continuable=False)
        return self._result(sim, concurrency, n, open_loop)

    def _start(
        self,
        concurrency: int,
        seed: int,
        n: int,
        controller: Controller | None,
        schedule: ArrivalSchedule | None,
        *,
        continuable: bool,
    ) -> tuple[ClusterSim, bool]:
        """A simulation run to its first ``n`` requests; ``continuable``: paused there, ready to ``extend``
        on the continuation of its stream (``request_stream`` parts of ``STREAM_PART``; a trace: its
        next requests, in passes)."""
        w = self.profile.workload
        open_loop = schedule is not None or w.open_loop
        if open_loop and schedule is None and w.trace is None:  # a trace brings its own arrival times
            schedule = ArrivalSchedule.from_workload(w)
        arrivals = schedule if open_loop else None
        reqs = request_stream(w, n, seed, arrivals)

        def more(part: int, first: int, after_s: float) -> RequestStream:
            return request_stream(w, STREAM_PART, seed, arrivals, part=part, after_s=after_s, first_index=first)

        sim = ClusterSim(self.profile, self.topology, self.perf, self.feas, seed)
        cont = more if continuable else None
        if open_loop:
            sim.run_open(reqs, controller, more=cont)
        else:
            sim.run_closed(reqs, concurrency, controller, spread_s=self.request_duration_s(concurrency), more=cont)
        return sim, open_loop

    def _result(self, sim: ClusterSim, concurrency: int, n: int, open_loop: bool) -> PointRun:
        """The records of the run's first ``n`` requests (all of a finished run's)."""
        w = self.profile.workload
        warm, cool = w.measurement_edges(n)
        run = sim.result(concurrency if not open_loop else -1, warm, cool)
        run.meta.update(self.perf.describe())
        run.meta.update(trace_meta(w, n))
        return run

    def request_duration_s(self, concurrency: int) -> float:
        """Rough mean request duration at ``concurrency`` (prefill + decode steps), from the perf model.

        Closed-loop clients start spread over it, so the run does not begin with a synchronised
        wave whose clumps persist for dozens of request cycles (autotune.steady).
        """
        w, topo = self.profile.workload, self.topology
        shape = mean_shape(w)
        isl, osl, prefix = shape.input_tokens, shape.output_tokens, int(shape.prefix_tokens)
        decoders = [tp for role, tp in topo.worker_tps() if role in ("decode", "agg")]
        prefillers = [tp for role, tp in topo.worker_tps() if role in ("prefill", "agg")]
        seqs = max(1, round(concurrency / max(len(decoders), 1)))
        new = max(int(isl - prefix), 1)
        prefill_s = self.perf.timer(prefillers[0]).step_s(new, prefill_attn_work(new, prefix), 0, 0, 0.0)
        step_s = self.perf.timer(decoders[0]).step_s(0, 0.0, seqs, int(seqs * (isl + osl / 2)), 0.5)
        return float(prefill_s + osl * step_s)


class SimBackend(Backend):
    name = "sim"
    predictions = True

    def __init__(self, perf_model: str = "roofline", **perf_options: Any) -> None:
        self.perf_model = perf_model
        self.perf_options = perf_options

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> SimDeployment:
        return SimDeployment(profile, topology, get_perf_model(self.perf_model, profile, **self.perf_options))

    def describe(self) -> dict[str, Any]:
        return {"backend": "sim", "perf_model": self.perf_model, **self.perf_options}
