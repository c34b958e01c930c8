"""``k8s``: each trial is one DynamoGraphDeployment on a real cluster, measured by a load burst.

deploy = render → server-side apply → watch until ready (or fail fast with the pods' reason) →
open the frontend (Service DNS in-cluster, LoadBalancer address, or port-forward; recorded) →
``/v1/models`` lists the model. ``close`` deletes the graph and waits until it and its pods are
gone; it runs on success, failure, Ctrl-C and SIGTERM (the handler turns SIGTERM into
``Interrupted`` so the ``with`` block unwinds), and ``atexit`` catches the rest.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.dynamo import logparse, scrape
from autotune.dynamo.point import build_point
from autotune.errors import BackendError, InfeasibleError, Interrupted
from autotune.feasibility import check_feasibility
from autotune.k8s import POD_LABEL_DGD
from autotune.k8s.access import FrontendAccess, open_frontend, probe_frontend
from autotune.k8s.client import Kube, KubeOptions, connect
from autotune.k8s.diagnose import PodWatcher
from autotune.k8s.lifecycle import TrialFailed, apply, delete, wait_gone, wait_ready
from autotune.k8s.render import render_dgd, version_of, worker_services
from autotune.loadgen.client import BurstConfig, run_burst
from autotune.loadgen.live_point import LivePoint
from autotune.loadgen.prompts import Api, Vocabulary
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.topology import RouterSettings, Topology

# Token-id prompts from ids every real tokenizer has (and the tiny test model's 4096): load does
# not need meaningful text, only exact token counts and shared prefixes.
_VOCAB = Vocabulary(tuple(str(i) for i in range(256, 4096)), tuple(range(256, 4096)), 0)
_LIVE: dict[str, K8sDeployment] = {}
_LIVE_LOCK = threading.Lock()


def _sigterm(signum: int, frame: object) -> None:
    if any(d.closing for d in list(_LIVE.values())):
        return  # already tearing down: let the deletes finish
    raise Interrupted(f"received signal {signum}; trial graphs are being deleted")


_previous_handler: list[Any] = []


def _track(dep: K8sDeployment, live: bool) -> None:
    """Register a live graph; while any is live, SIGTERM raises ``Interrupted`` so ``with`` blocks unwind.

    The handler is installed only where nobody else handles SIGTERM (the CLI may have its own)
    and only from the main thread; the previous handler comes back when the last graph is gone.
    """
    with _LIVE_LOCK:
        if live:
            _LIVE[dep.name] = dep
        else:
            _LIVE.pop(dep.name, None)
        if threading.current_thread() is not threading.main_thread():
            return
        if _LIVE and not _previous_handler and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            _previous_handler.append(signal.signal(signal.SIGTERM, _sigterm))
        elif not _LIVE and _previous_handler:
            signal.signal(signal.SIGTERM, _previous_handler.pop())


@atexit.register
def _close_all() -> None:
    for dep in list(_LIVE.values()):
        try:
            dep.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit; `autotune cleanup` remains
            pass


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
        _track(self, True)
        try:
            self._bring_up()
        except BaseException as exc:
            try:
                self.close()
            except BackendError as teardown:  # report both: why the trial failed and what may be left
                raise BackendError(f"{exc}; teardown also failed: {teardown}") from exc
            raise

    # ---- bring-up ---------------------------------------------------------------------------
    def _bring_up(self) -> None:
        t0 = time.monotonic()
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
        self._wait_served(deadline=time.monotonic() + left, pods=pods)
        t3 = time.monotonic()
        self.timings = {"apply_s": t1 - t0, "ready_s": t2 - t1, "frontend_s": t3 - t2, "deploy_s": t3 - t0}

    def _wait_served(self, *, deadline: float, pods: PodWatcher) -> None:
        """Poll ``/v1/models`` + worker registration, checking pods every 2 s, until the deadline."""
        assert self.access is not None
        workers = sum(worker_services(self.dgd).values())
        next_pods = time.monotonic() + 2.0
        while True:
            missing = probe_frontend(self.access.url, self.model, workers)
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

    # ---- measuring --------------------------------------------------------------------------
    def set_router(self, router: RouterSettings) -> None:
        """Re-apply with new frontend flags: a frontend-only rollout (workers keep their caches)."""
        self.topology = self.topology.with_router(router)
        self.dgd = render_dgd(self.profile, self.topology, study=self.backend.study, trial_id=self.trial_id)
        if self.access is not None:
            self.access.close()
            self.access = None
        self._bring_up()

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
            vocab=_VOCAB,
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
        log, log_note = self._frontend_log(burst)
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
            worker_index=_worker_index(log, self.topology),
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

    def _frontend_log(self, burst: Any) -> tuple[logparse.FrontendLog, str]:
        """Routing decisions of this burst's requests from the frontend's log (pod log: ``pods/log: get``)."""
        since_s = time.time() - burst.t0_wall + 5
        try:
            text, source = (self.backend.frontend_logs or _pod_log)(self, since_s)
        except Exception as exc:  # noqa: BLE001 - decisions are optional; the measurement stands
            return logparse.FrontendLog(), f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        ids = {r.response_id for r in burst.records if r.response_id}
        log = logparse.FrontendLog()
        for line in text.splitlines():
            logparse.parse_line(line, log)
        log.inputs = [e for e in log.inputs if e.request_id in ids]  # earlier points share the log
        log.selections = [e for e in log.selections if e.request_id in ids]
        log.stages = [e for e in log.stages if e.request_id in ids]
        log.requests = [e for e in log.requests if e.request_id in ids]
        return log, f"{source}: {len(log.selections)} selections"

    # ---- teardown ---------------------------------------------------------------------------
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
            _track(self, False)


def _pod_log(dep: K8sDeployment, since_s: float) -> tuple[str, str]:
    """The frontend pod's log of the last ``since_s`` seconds, and which pod it came from."""
    pods = dep.kube.core.list_namespaced_pod(
        dep.namespace, label_selector=f"{POD_LABEL_DGD}={dep.name}", _request_timeout=10
    )
    # The ignores: the client types every field Optional; the API server always sets metadata.name.
    fronts = [p for p in pods.items if "frontend" in p.metadata.name]  # type: ignore[union-attr,operator]
    if not fronts:
        raise BackendError("no frontend pod found")
    name: str = fronts[0].metadata.name  # type: ignore[union-attr,assignment]
    return dep.kube.core.read_namespaced_pod_log(
        name, dep.namespace, since_seconds=math.ceil(since_s), _request_timeout=30
    ), f"pod {name}"


def _worker_index(log: logparse.FrontendLog, topology: Topology) -> dict[int, int]:
    """Instance id → worker index: per role, instance ids in sorted order (stable across points)."""
    roles = topology.worker_tps()
    out: dict[int, int] = {}
    for kind in ("prefill", "decode"):
        role = kind if topology.disaggregated else "agg"
        idx = [i for i, (r, _) in enumerate(roles) if r == role]
        ids = sorted({s.worker_id for s in log.selections if s.worker_type == kind})
        out.update({iid: idx[k] for k, iid in enumerate(ids[: len(idx)])})
    return out


class K8sBackend(Backend):
    """Options: ``kubeconfig``/``context``/``in_cluster`` (cluster; default ``$KUBECONFIG``, context
    ``$AUTOTUNE_KUBE_CONTEXT``), ``study`` (graph names and labels; default ``$AUTOTUNE_STUDY``),
    ``frontend_access`` (auto | service-dns | load-balancer | port-forward), deadlines, and
    ``frontend_logs`` (where routing decisions are read; default the frontend pod's log)."""

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

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> K8sDeployment:
        feas = check_feasibility(topology, profile)
        if not feas.ok:
            raise InfeasibleError(f"topology {topology.shape()}: {feas.reason}")
        return K8sDeployment(self, profile, topology, trial_id or f"{int(time.time())}")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "study": self.study,
            "cluster": self.kube.source,
            "context": self.kube.context,
            "frontend_access_requested": self.frontend_access,
        }
