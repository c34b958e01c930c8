"""A k8s backend whose graphs are real API objects (test operator, fake frontend) and whose points the simulator measures.

For the redeploy tests and ``benchmarks/bench_live_redeploys.py``: deploy, patch, keep and delete go
through ``K8sBackend`` against the real kube-apiserver; ``run_point`` waits ``measure_s`` (a live
burst's wall time) and returns the simulator's point for the topology, so the sampler sees
realistic objective values without real Dynamo processes.
"""

from __future__ import annotations

import time
from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.backends.k8s import K8sBackend, K8sDeployment
from autotune.backends.sim import SimBackend
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.topology import Topology


class SimMeasuredDeployment(Deployment):
    def __init__(self, live: K8sDeployment, sim: Deployment, measure_s: float) -> None:
        self.live, self.sim, self.measure_s = live, sim, measure_s
        self.topology, self.redeploy, self.deploy_s = live.topology, live.redeploy, live.deploy_s

    def run_point(
        self, concurrency: int, *, seed: int, requests: int | None = None, controller: Any | None = None
    ) -> PointRun:
        time.sleep(self.measure_s)
        point = self.sim.run_point(concurrency, seed=seed, requests=requests, controller=controller)
        point.meta.update(self.live.describe())
        return point

    def release(self) -> None:
        self.live.release()

    def close(self) -> None:
        self.live.close()


class SimMeasured(Backend):
    name = "k8s"

    def __init__(self, *, measure_s: float = 0.0, **k8s_options: Any) -> None:
        self.k8s = K8sBackend(**k8s_options)
        self.sim = SimBackend()
        self.measure_s = measure_s

    def keep_deployments(self) -> None:
        self.k8s.keep_deployments()

    def close(self) -> None:
        self.k8s.close()

    def holds_deployment(self) -> bool:
        return self.k8s.holds_deployment()

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> SimMeasuredDeployment:
        live = self.k8s.deploy(profile, topology, trial_id=trial_id)
        if self.on_deployed is not None:
            self.on_deployed()
        return SimMeasuredDeployment(live, self.sim.deploy(profile, topology), self.measure_s)

    def describe(self) -> dict[str, Any]:
        return self.k8s.describe()
