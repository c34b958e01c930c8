"""The embedded default backend: each trial is a discrete-event simulation (``autotune.sim``)."""

from __future__ import annotations

from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.errors import InfeasibleError
from autotune.feasibility import check_feasibility
from autotune.perf import PerfModel, get_perf_model
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.sim.cluster import ClusterSim, Controller
from autotune.topology import RouterSettings, Topology
from autotune.workload import ArrivalSchedule, measurement_edges, request_stream


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
        w = self.profile.workload
        n = requests or w.requests_per_point
        warm, cool = measurement_edges(w, n)
        open_loop = schedule is not None or w.arrival == "open"
        if open_loop and schedule is None:
            schedule = ArrivalSchedule.from_workload(w)
        reqs = request_stream(w, n, seed, schedule if open_loop else None)
        sim = ClusterSim(self.profile, self.topology, self.perf, self.feas, seed)
        if open_loop:
            sim.run_open(reqs, controller)
        else:
            sim.run_closed(reqs, concurrency, controller)
        run = sim.result(concurrency if not open_loop else -1, warm, cool)
        run.meta.update(self.perf.describe())
        return run


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
