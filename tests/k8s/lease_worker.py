"""``autotune worker`` whose k8s trials run the real graph lifecycle but are measured by the simulator.

For the GPU-lease test: three workers on a 2-core machine, graphs of up to 24 GPUs, so the test
operator launches no processes and there is no frontend to load. Each trial still goes through the
k8s backend's own lifecycle — server-side apply, wait until the operator marks it Ready, delete,
wait until it is gone — between the worker's lease and its release; only the load points come from
the simulator for the same topology. The check (which graphs existed when) depends on the lifecycle only.

Usage: ``python tests/k8s/lease_worker.py worker -b k8s …`` (the ``autotune`` command line).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from autotune import backends, cli  # noqa: E402
from autotune.backends.k8s import K8sBackend, K8sDeployment  # noqa: E402
from autotune.backends.sim import SimBackend  # noqa: E402
from autotune.errors import InfeasibleError  # noqa: E402
from autotune.feasibility import check_feasibility  # noqa: E402
from autotune.k8s.diagnose import PodWatcher  # noqa: E402
from autotune.k8s.lifecycle import apply, wait_ready  # noqa: E402
from autotune.profile import Profile  # noqa: E402
from autotune.records import PointRun  # noqa: E402
from autotune.topology import Topology  # noqa: E402


class SimMeasuredDeployment(K8sDeployment):
    def _bring_up(self) -> None:
        apply(self.kube, self.dgd)
        wait_ready(
            self.kube,
            self.namespace,
            self.name,
            version=self.api_version,
            timeout_s=self.backend.ready_timeout_s,
            pods=PodWatcher(grace_s=self.backend.unschedulable_grace_s),
        )
        self._sim = SimBackend().deploy(self.profile, self.topology, trial_id=self.trial_id)

    def run_point(
        self, concurrency: int, *, seed: int, requests: int | None = None, controller: Any | None = None
    ) -> PointRun:
        return self._sim.run_point(concurrency, seed=seed, requests=requests)


class SimMeasuredK8s(K8sBackend):
    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> K8sDeployment:
        feas = check_feasibility(topology, profile)
        if not feas.ok:
            raise InfeasibleError(f"topology {topology.shape()}: {feas.reason}")
        self.close()  # this stand-in never patches: a graph kept by the last trial is deleted first
        dep = SimMeasuredDeployment(self, profile, topology, trial_id)
        if self.on_deployed is not None:
            self.on_deployed()
        return dep


if __name__ == "__main__":
    backends.BACKENDS["k8s"] = lambda **kw: SimMeasuredK8s(**kw)
    cli.main(sys.argv[1:])
