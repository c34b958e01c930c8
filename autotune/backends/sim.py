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
from autotune.workload import ArrivalSchedule, mean_shape, request_stream, trace_meta

log = logging.getLogger("autotune.sim")


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
        keeps doubling its length until every headline figure meets the profile's precision target or
        ``measurement.max_requests`` is reached; ``meta`` says which. Scheduled and controlled runs
        (ramps, spikes) have a fixed length: their time structure is the experiment."""
        w, meas = self.profile.workload, self.profile.measurement
        n = requests or w.requests_per_point
        adaptive = meas.adaptive and controller is None and schedule is None and w.spike is None
        while True:
            run = self._run_once(concurrency, seed, n, controller, schedule)
            if not adaptive:
                return run
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

    def _run_once(
        self, concurrency: int, seed: int, n: int, controller: Controller | None, schedule: ArrivalSchedule | None
    ) -> PointRun:
        w = self.profile.workload
        warm, cool = w.measurement_edges(n)
        open_loop = schedule is not None or w.open_loop
        if open_loop and schedule is None and w.trace is None:  # a trace brings its own arrival times
            schedule = ArrivalSchedule.from_workload(w)
        reqs = request_stream(w, n, seed, schedule if open_loop else None)
        sim = ClusterSim(self.profile, self.topology, self.perf, self.feas, seed)
        if open_loop:
            sim.run_open(reqs, controller)
        else:
            sim.run_closed(reqs, concurrency, controller, spread_s=self.request_duration_s(concurrency))
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
