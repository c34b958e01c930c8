"""``k8s``: each trial is one DynamoGraphDeployment on a real cluster, measured by a load burst.

deploy = render → server-side apply → watch until ready (or fail fast with the pods' reason) →
open the frontend (Service DNS in-cluster, LoadBalancer address, or port-forward; recorded) →
``/v1/models`` lists the model. ``close`` deletes the graph and waits until it and its pods are
gone; it runs on failure, Ctrl-C and SIGTERM (``k8s_live``), and on success unless the backend keeps
the graph: then the next ``deploy`` patches it when only the frontend or the replica counts change
(``autotune.k8s.redeploy``), and ``K8sBackend.close`` deletes it at the end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.backends.k8s_live import track
from autotune.backends.k8s_logs import pod_log, routing_log, worker_index
from autotune.dynamo import scrape
from autotune.dynamo.point import build_point
from autotune.errors import BackendError, InfeasibleError
from autotune.feasibility import check_feasibility
from autotune.k8s.access import FrontendAccess, open_frontend, probe_frontend
from autotune.k8s.client import Kube, KubeOptions, connect
from autotune.k8s.diagnose import PodWatcher
from autotune.k8s.lifecycle import TrialFailed, apply, delete, wait_gone, wait_ready
from autotune.k8s.redeploy import FULL, Change, classify, graft
from autotune.k8s.render import render_dgd, version_of, worker_services
from autotune.loadgen.client import BurstConfig, run_burst
from autotune.loadgen.live_point import LivePoint
from autotune.loadgen.prompts import TOKEN_ID_VOCAB, Api
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.topology import RouterSettings, Topology


class K8sDeployment(Deployment):
    def __init__(self, backend: K8sBackend, profile: Profile, topology: Topology, trial_id: str) -> None:
        self.backend, self.profile, self.topology, self.trial_id = backend, profile, topology, trial_id
        self.kube = backend.kube
        self.namespace = profile.dynamo.namespace
        self.model = profile.model.served_name or profile.model.name
        self.access: FrontendAccess | None = None
        self.closing = self.closed = False
        self.timings: dict[str, float] = {}
        self.dgd = render_dgd(profile, topology, study=backend.study, trial_id=trial_id)
        self.name = self.dgd["metadata"]["name"]
        self.api_version = version_of(self.dgd)  # the profile's Dynamo version decides (render.py)
        self._pod_failure: str | None = None
        self._stop_watchdog = threading.Event()
        track(self, True)
        self._guarded(self._bring_up)

    def _guarded(self, bring_up: Callable[[], None]) -> None:
        """Bring the graph up or patch it; on any failure delete it, and say so if that fails too."""
        try:
            bring_up()
        except BaseException as exc:
            try:
                self.close()
            except BackendError as teardown:  # report both: why the trial failed and what may be left
                raise BackendError(f"{exc}; teardown also failed: {teardown}") from exc
            raise

    # ---- bring-up ---------------------------------------------------------------------------
    def _bring_up(self, *, exact_workers: bool = False) -> None:
        t0 = time.monotonic()
        if self.access is not None:  # a patch: the frontend may have been replaced (a new pod to forward to)
            self.access.close()
            self.access = None
        apply(self.kube, self.dgd)
        t1 = time.monotonic()
        pods = PodWatcher(grace_s=self.backend.unschedulable_grace_s)
        wait_ready(
            self.kube,
            self.namespace,
            self.name,
            version=self.api_version,
            timeout_s=self.backend.ready_timeout_s,
            pods=pods,
        )
        t2 = time.monotonic()
        left = max(1.0, self.backend.ready_timeout_s - (t2 - t0))
        self.access = open_frontend(
            self.kube,
            self.namespace,
            self.name,
            port=self.profile.dynamo.frontend_port,
            mode=self.backend.frontend_access,
            kubectl=self.backend.kubectl,
        )
        self._wait_served(deadline=time.monotonic() + left, pods=pods, exact=exact_workers)
        t3 = time.monotonic()
        self.timings = {"apply_s": t1 - t0, "ready_s": t2 - t1, "frontend_s": t3 - t2, "deploy_s": t3 - t0}

    def _wait_served(self, *, deadline: float, pods: PodWatcher, exact: bool = False) -> None:
        """Poll ``/v1/models`` + worker registration, checking pods every 2 s, until the deadline.

        ``exact``: after a scale-down, also until the removed workers have left the frontend's list.
        """
        assert self.access is not None
        workers = sum(worker_services(self.dgd).values())
        next_pods = time.monotonic() + 2.0
        while True:
            missing = probe_frontend(self.access.url, self.model, workers, exact=exact)
            if missing is None:
                return
            now = time.monotonic()
            if now >= deadline:
                raise TrialFailed(
                    "deadline",
                    f"{self.name} is Ready but its frontend is not serving: {missing} "
                    f"(via {self.access.mode} {self.access.url})",
                )
            if now >= next_pods:
                failure = pods.check(self.kube, self.namespace, self.name)
                if failure is not None:
                    raise TrialFailed(failure.kind, failure.reason)
                next_pods = now + 2.0
            time.sleep(0.2)

    # ---- patching in place ------------------------------------------------------------------
    def plan_patch(self, topology: Topology, trial_id: str) -> tuple[dict[str, Any], Change]:
        """The next graph as a patch of this one, and what the operator will have to redo for it."""
        wanted = render_dgd(self.profile, topology, study=self.backend.study, trial_id=trial_id)
        wanted = graft(wanted, self.dgd)
        return wanted, classify(self.dgd, wanted)

    def patch(self, topology: Topology, trial_id: str, wanted: dict[str, Any], change: Change) -> None:
        """Turn this graph into ``wanted`` in place (not for a ``full`` change) and wait until it serves it."""
        assert change.kind != FULL, change
        self.topology, self.trial_id, self.dgd, self.redeploy = topology, trial_id, wanted, change.kind
        self._guarded(lambda: self._bring_up(exact_workers=True))

    def set_router(self, router: RouterSettings) -> None:
        """Patch new frontend flags: a frontend-only rollout (workers keep their caches)."""
        topology = self.topology.with_router(router)
        self.patch(topology, self.trial_id, *self.plan_patch(topology, self.trial_id))

    # ---- measuring --------------------------------------------------------------------------

    def run_point(
        self, concurrency: int, *, seed: int, requests: int | None = None, controller: Any | None = None
    ) -> PointRun:
        if self.closed or self.access is None:
            raise BackendError(f"k8s: trial {self.trial_id}: deployment already closed")
        if controller is not None:
            raise BackendError("k8s: router settings cannot change during a live point (use set_router between points)")
        w = self.profile.workload
        api: Api = "completions"
        live = LivePoint(
            self.profile,
            concurrency,
            seed=seed,
            requests=requests or w.requests_per_point,
            vocab=TOKEN_ID_VOCAB,
            api=api,
            model=self.model,
            gpus=self.topology.gpus,
        )
        arrivals = live.arrivals_s
        cfg = BurstConfig(
            self.access.url,
            api=api,
            concurrency=concurrency,
            arrivals_s=arrivals,
            think_s=live.think_time(),
            request_timeout_s=self.backend.request_timeout_s,
            max_wall_s=self.backend.max_burst_s,
        )
        metrics_url = f"{self.access.url}/metrics"
        before = scrape.scrape(metrics_url)
        watcher = self._start_pod_watchdog()
        try:
            burst = run_burst(
                cfg,
                live.bodies,
                watchdog=lambda: self._pod_failure,
                grow=live.grow_callback(),
                lookahead=live.lookahead,
            )
        finally:
            self._stop_watchdog.set()
            watcher.join(5)
        if burst.aborted:
            raise TrialFailed("burst", f"trial {self.trial_id} failed during the burst: {burst.aborted}")
        after = scrape.scrape(metrics_url)
        log, log_note = routing_log(self._read_frontend_log, burst)
        meta: dict[str, Any] = {
            **self.backend.describe(),
            **self.describe(),
            "api": api,
            "open_loop": arrivals is not None,
            "frontend_metrics": scrape.summarize_frontend(before, after),
            "routing_log": log_note,
        }
        point = build_point(
            topology=self.topology,
            concurrency=concurrency if arrivals is None else -1,
            specs=live.sent_specs(burst),
            burst=burst,
            log=log,
            worker_index=worker_index(log, self.topology),
            edges=live.edges(burst),
            meta=meta,
        )
        point.backend = "k8s"
        return live.finish(point, burst)

    def describe(self) -> dict[str, Any]:
        """Provenance of this trial: where the graph ran and how it was reached."""
        return {
            "trial_id": self.trial_id,
            "dgd": self.name,
            "dgd_api_version": self.api_version,
            "namespace": self.namespace,
            "frontend_access": self.access.mode if self.access else None,
            "frontend_url": self.access.url if self.access else None,
            "in_cluster": self.kube.in_cluster,
            "dynamo_version": self.profile.dynamo.version,
            "redeploy": self.redeploy,
            "k8s_timings_s": dict(self.timings),
        }

    def _start_pod_watchdog(self) -> threading.Thread:
        """Check pods every 5 s off the burst's event loop; a failure aborts the burst."""
        self._stop_watchdog.clear()
        self._pod_failure = None
        pods = PodWatcher(grace_s=self.backend.unschedulable_grace_s)

        def loop() -> None:
            while not self._stop_watchdog.wait(5.0):
                try:
                    failure = pods.check(self.kube, self.namespace, self.name)
                except BackendError:
                    continue  # the API hiccupping is not the graph failing
                if failure is not None:
                    self._pod_failure = failure.reason
                    return

        t = threading.Thread(target=loop, daemon=True, name=f"pods-{self.name}")
        t.start()
        return t

    def _read_frontend_log(self, since_s: float) -> tuple[str, str]:
        if self.backend.frontend_logs is not None:
            return self.backend.frontend_logs(self, since_s)
        return pod_log(self.kube, self.namespace, self.name, since_s)

    # ---- teardown ---------------------------------------------------------------------------
    def release(self) -> None:
        """The trial finished cleanly: the backend keeps the graph for the next trial, or it is deleted."""
        if not self.closed and not self.backend.hold(self):
            self.close()

    def close(self) -> None:
        """Delete the graph and wait until it and its pods are gone; idempotent."""
        if self.closed or self.closing:
            return
        self.closing = True
        try:
            self._stop_watchdog.set()
            if self.access is not None:
                self.access.close()
            t0 = time.monotonic()
            try:
                delete(self.kube, self.namespace, self.name, version=self.api_version)
                t1 = time.monotonic()
                wait_gone(
                    self.kube,
                    self.namespace,
                    self.name,
                    version=self.api_version,
                    timeout_s=self.backend.delete_timeout_s,
                )
            except BackendError as exc:
                raise BackendError(
                    f"{exc}; graph {self.name} may be left in namespace {self.namespace}: remove it "
                    f"with `autotune cleanup -N {self.namespace} --study {self.backend.study}`"
                ) from exc
            self.timings.update(delete_s=t1 - t0, gone_s=time.monotonic() - t1)
        finally:
            self.closed = True
            track(self, False)


class K8sBackend(Backend):
    """Options: ``kubeconfig``/``context``/``in_cluster`` (cluster; default ``$KUBECONFIG``, context
    ``$AUTOTUNE_KUBE_CONTEXT``), ``study`` (graph names and labels; default ``$AUTOTUNE_STUDY``),
    ``frontend_access`` (auto | service-dns | load-balancer | port-forward), deadlines, and
    ``frontend_logs`` (where routing decisions are read; default the frontend pod's log).

    After ``keep_deployments`` it holds the last cleanly released graph (one at most) and the next
    ``deploy`` patches it when the change allows; ``close`` deletes it."""

    name = "k8s"
    predictions = False

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        study: str | None = None,
        frontend_access: str = "auto",
        ready_timeout_s: float = 1800.0,
        delete_timeout_s: float = 600.0,
        unschedulable_grace_s: float = 60.0,
        request_timeout_s: float = 120.0,
        max_burst_s: float = 900.0,
        kubectl: str = "kubectl",
        kube: Kube | None = None,
        frontend_logs: Callable[[K8sDeployment, float], tuple[str, str]] | None = None,
    ) -> None:
        context = context or os.environ.get("AUTOTUNE_KUBE_CONTEXT") or None
        self.kube = kube or connect(KubeOptions(kubeconfig, context, in_cluster))
        study = study or os.environ.get("AUTOTUNE_STUDY") or "autotune"
        self.frontend_logs = frontend_logs
        self.study, self.frontend_access, self.kubectl = study, frontend_access, kubectl
        self.ready_timeout_s, self.delete_timeout_s = ready_timeout_s, delete_timeout_s
        self.unschedulable_grace_s = unschedulable_grace_s
        self.request_timeout_s, self.max_burst_s = request_timeout_s, max_burst_s
        self._keep = False
        self._kept: K8sDeployment | None = None

    def keep_deployments(self) -> None:
        self._keep = True

    def holds_deployment(self) -> bool:
        return self._kept is not None

    def hold(self, dep: K8sDeployment) -> bool:
        """Keep ``dep`` for the next trial (True), or not (False: the caller deletes it)."""
        if not self._keep or self._kept is not None:
            return False
        self._kept = dep
        return True

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> K8sDeployment:
        feas = check_feasibility(topology, profile)
        if not feas.ok:
            raise InfeasibleError(f"topology {topology.shape()}: {feas.reason}")
        t0 = time.monotonic()
        trial_id = trial_id or f"{int(time.time())}"
        kept, self._kept = self._kept, None
        dep: K8sDeployment | None = None
        if kept is not None and kept.profile.digest() == profile.digest():
            wanted, change = kept.plan_patch(topology, trial_id)
            if change.kind != FULL:
                kept.patch(topology, trial_id, wanted, change)  # deletes the graph if the patch fails
                dep = kept
        if dep is None:
            if kept is not None:
                kept.close()  # another graph: free its GPUs first
            dep = K8sDeployment(self, profile, topology, trial_id)
        dep.deploy_s = time.monotonic() - t0
        if self.on_deployed is not None:
            self.on_deployed()
        return dep

    def close(self) -> None:
        """Delete the graph kept between trials, if any (the end of a study, a signal, an error)."""
        kept, self._kept = self._kept, None
        if kept is not None:
            kept.close()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "study": self.study,
            "cluster": self.kube.source,
            "context": self.kube.context,
            "frontend_access_requested": self.frontend_access,
        }
