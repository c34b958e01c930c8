"""The one interface every trial backend implements: deploy a topology, run load points, tear down.

Backends plug in like Optuna samplers (the table is ``autotune.backends.BACKENDS``): the search
only sees ``Backend.deploy`` and the ``Deployment`` it returns, used as a context manager so teardown happens on success, failure
and Ctrl-C alike. A backend asked to ``keep_deployments`` may instead keep a cleanly finished
deployment for its next ``deploy`` to patch (docs/kubernetes.md, "Redeploys"); whoever asked must
``close`` the backend, which tears down what it kept.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Self

from autotune.profile import Profile
from autotune.records import PointRun
from autotune.topology import RouterSettings, Topology


class Deployment(abc.ABC):
    """A running topology. ``run_point`` may be called several times (a concurrency sweep)."""

    topology: Topology
    redeploy: str = "full"  # what ``deploy`` did: none | frontend | replicas | full (autotune.k8s.redeploy)
    deploy_s: float | None = None  # wall time of ``deploy`` until it served; None: nothing was deployed

    @abc.abstractmethod
    def run_point(
        self,
        concurrency: int,
        *,
        seed: int,
        requests: int | None = None,
        controller: Any | None = None,
    ) -> PointRun:
        """Run one load point; ``controller`` may change router settings during the run."""

    def set_router(self, router: RouterSettings) -> None:
        """Change router settings between points (live backends may need a frontend restart)."""
        raise NotImplementedError(f"{type(self).__name__} cannot change router settings at run time")

    def close(self) -> None:  # noqa: B027 - nothing to tear down by default (the simulator)
        """Tear down everything ``deploy`` started; must be idempotent."""

    def release(self) -> None:
        """The trial is done with it and nothing failed: tear down, unless the backend keeps it for the next."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.release()
        else:  # a failed or interrupted trial's graph is never reused
            self.close()


class Backend(abc.ABC):
    name: str = "?"
    predictions: bool = False  # True when results are model predictions, not measurements
    # called once a ``deploy`` that may have reused a kept graph serves: the graph kept before is now
    # this trial's or deleted (the search loop then gives the kept graph's GPU lease back)
    on_deployed: Callable[[], None] | None = None

    @abc.abstractmethod
    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str) -> Deployment:
        """Start the topology and return once it serves; raise ``BackendError`` with a reason if not."""

    def describe(self) -> dict[str, Any]:
        """Provenance for results: backend name, versions, timing source."""
        return {"backend": self.name}

    def keep_deployments(self) -> None:  # noqa: B027 - keeping nothing is right where deploying is free
        """Keep a cleanly released deployment for the next ``deploy`` to reuse; the caller then owns ``close``."""

    def holds_deployment(self) -> bool:
        """A released deployment is kept (its GPUs are still in use until ``close`` or the next ``deploy``)."""
        return False

    def close(self) -> None:  # noqa: B027 - nothing kept by default
        """Tear down whatever the backend kept; idempotent."""
