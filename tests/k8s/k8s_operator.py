"""A small stand-in for Dynamo's operator, running as a thread in the test process.

The test apiserver has no controllers, kubelet or scheduler, so this thread plays the operator
for DGDs in one namespace: it adds a finalizer, (optionally) starts real dynamo-local processes
through ``launch`` (or serves a ``FakeFrontend`` for ``fake_model``), publishes the frontend as a
LoadBalancer Service at 127.0.0.1, writes ``.status`` (state, Ready condition, per-service or
per-component replicas, by apiVersion), and on deletion stops the processes, removes its pods and
Service and drops the finalizer. ``behavior`` selects faults per graph.

Each generation is rolled out like Dynamo's operator does (``k8s_rollout.plan_rollout``): only the
components whose spec changed restart, a replica change starts or stops only the difference, and
each start takes ``startup_s[kind]`` (frontend / worker; default ``ready_delay_s``). ``rollouts``
logs every step with its graph, generation and time.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from k8s_rollout import FRONTEND_KIND, FakeFrontend, Rollout, Step, plan_rollout, ready_workers
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from operator_ledger import GpuLedger

from autotune.k8s import GROUP, PLURAL, POD_LABEL_DGD, V1ALPHA1
from autotune.k8s.names import FRONTEND, frontend_service_name
from autotune.k8s.render import worker_services

FINALIZER = "test.autotune.dev/operator"

# behavior -> how the graph's pods fail (None: they do not exist or are fine)
POD_FAULTS: dict[str, dict[str, Any]] = {
    "crashloop": {
        "containerStatuses": [
            {
                "name": "main",
                "image": "img",
                "imageID": "",
                "ready": False,
                "restartCount": 5,
                "state": {
                    "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}
                },
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ]
    },
    "imagepull": {
        "containerStatuses": [
            {
                "name": "main",
                "image": "img",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'}},
            }
        ]
    },
    "unschedulable": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            }
        ]
    },
}


class Running(Protocol):
    """Processes serving one graph; ``port`` is the frontend's loopback port."""

    port: int

    def stop(self) -> None: ...


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class TestOperator:
    api: client.ApiClient
    namespace: str
    version: str  # the DGD apiVersion the cluster serves; reads, patches and status use it
    behavior: Callable[[dict[str, Any]], str] = lambda obj: (
        "ready"
    )  # ready|never|failed|crashloop|imagepull|unschedulable
    launch: Callable[[dict[str, Any]], Running] | None = None  # start real processes for "ready" graphs
    ready_delay_s: float = 0.0
    startup_s: dict[str, float] = field(default_factory=dict)  # frontend|worker -> seconds a start takes
    fake_model: str | None = None  # serve a FakeFrontend listing this model (no launch)
    events: list[tuple[str, str]] = field(default_factory=list)  # (action, dgd) in order, for assertions
    rollouts: list[Rollout] = field(default_factory=list)  # every rollout step, in order
    errors: list[str] = field(default_factory=list)
    stamps: dict[tuple[str, str], float] = field(default_factory=dict)  # (what, dgd) -> monotonic time, for timing
    ledger: GpuLedger = field(default_factory=GpuLedger)  # which graphs held how many GPUs when
    _running: dict[str, Running] = field(default_factory=dict)
    _specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # the spec each graph runs (or rolls to)
    _fronts: dict[str, FakeFrontend] = field(default_factory=dict)
    _handled: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Launches run on one long-lived thread: dynamo-local children get PR_SET_PDEATHSIG, which fires
    # when the *thread* that forked them exits, so a short-lived reconcile thread would kill them.
    _launcher: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="launch"))

    @property
    def co(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def start(self) -> TestOperator:
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"test-operator-{self.namespace}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            running, self._running = dict(self._running), {}
            fronts, self._fronts = dict(self._fronts), {}
        for r in running.values():
            r.stop()
        for f in fronts.values():
            f.stop()
        self._launcher.shutdown(wait=True)

    # ---- watch loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        rv = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    lst = self.co.list_namespaced_custom_object(GROUP, self.version, self.namespace, PLURAL)
                    rv = lst["metadata"]["resourceVersion"]
                    for obj in lst.get("items") or []:
                        self._handle("ADDED", obj)
                w = watch.Watch()
                for ev in w.stream(
                    self.co.list_namespaced_custom_object,
                    GROUP,
                    self.version,
                    self.namespace,
                    PLURAL,
                    resource_version=rv,
                    timeout_seconds=1,
                    _request_timeout=(5, 15),
                ):
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    rv = ev["raw_object"]["metadata"]["resourceVersion"]
                    self._handle(ev["type"], ev["raw_object"])
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                else:
                    self.errors.append(f"watch: {exc.status}")
                    time.sleep(0.2)
            except Exception as exc:  # the operator must outlive one bad event
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        name = md["name"]
        if kind == "DELETED":
            self._teardown(name)
            return
        if md.get("deletionTimestamp"):
            if FINALIZER in (md.get("finalizers") or []):
                self._teardown(name)
                rest = [f for f in md["finalizers"] if f != FINALIZER]
                self.stamps[("finalize", name)] = time.monotonic()
                self.co.patch_namespaced_custom_object(
                    GROUP,
                    self.version,
                    self.namespace,
                    PLURAL,
                    name,
                    {"metadata": {"finalizers": rest or None, "resourceVersion": md["resourceVersion"]}},
                )
                self.events.append(("finalized", name))
            return
        self.ledger.seen(obj)
        if FINALIZER not in (md.get("finalizers") or []):
            self.co.patch_namespaced_custom_object(
                GROUP,
                self.version,
                self.namespace,
                PLURAL,
                name,
                {"metadata": {"finalizers": (md.get("finalizers") or []) + [FINALIZER]}},
            )
        gen = md.get("generation", 1)
        with self._lock:
            if self._handled.get(name) == gen:
                return
            self._handled[name] = gen
        threading.Thread(target=self._reconcile, args=(obj,), daemon=True, name=f"reconcile-{name}").start()

    # ---- reconcile one generation ------------------------------------------------------------
    def _reconcile(self, obj: dict[str, Any]) -> None:
        name, gen = obj["metadata"]["name"], obj["metadata"].get("generation", 1)
        mode = self.behavior(obj)
        self.events.append((f"reconcile:{mode}", name))
        try:
            self._set_status(name, gen, obj, "pending", ready=False, reason="PodsNotReady", message="pods starting")
            if mode in POD_FAULTS:
                self._fault_pod(name, POD_FAULTS[mode])
                return
            if mode == "failed":
                self._set_status(
                    name,
                    gen,
                    obj,
                    "failed",
                    ready=False,
                    reason="ReconcileFailed",
                    message="insufficient_capacity: not enough GPUs",
                )
                return
            if mode != "ready":
                return  # "never": stays pending forever
            with self._lock:
                steps = plan_rollout(self._specs.get(name), obj)
                self._specs[name] = obj
            self.events.extend((f"{st.action}:{st.component}", name) for st in steps)
            if self.fake_model is not None and name in self._fronts:  # stopped workers leave at once
                self._fronts[name].workers = min(self._fronts[name].workers, ready_workers(obj))
            starts = [self.startup_s.get(st.kind, self.ready_delay_s) for st in steps if st.action != "stop"]
            if starts and max(starts):
                time.sleep(max(starts))  # the pods start in parallel: the slowest decides
            with self._lock:
                if self._handled.get(name) != gen:
                    return  # deleted or superseded while starting
            self.rollouts.extend(Rollout(name, gen, st, time.monotonic()) for st in steps)
            if self.fake_model is not None:
                self._serve_fake(name, obj, steps)
            elif self.launch is not None:
                with self._lock:
                    old = self._running.pop(name, None)
                if old is not None:
                    old.stop()  # real processes: any change restarts the whole stack
                running = self._launcher.submit(self.launch, obj).result()
                with self._lock:
                    stale = self._handled.get(name) != gen  # deleted or superseded while starting
                    if not stale:
                        self._running[name] = running
                if stale:
                    running.stop()
                    return
                self._publish_frontend(name, running.port)
            self.stamps[("ready", name)] = time.monotonic()
            self._set_status(
                name, gen, obj, "successful", ready=True, reason="AllComponentsReady", message="all components ready"
            )
            self.events.append(("ready", name))
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile
                self.errors.append(f"reconcile {name}: {exc.status} {exc.reason}")
        except Exception as exc:
            self.errors.append(f"reconcile {name}: {type(exc).__name__}: {exc}")

    def _serve_fake(self, name: str, obj: dict[str, Any], steps: list[Step]) -> None:
        """A new or restarted frontend is a new server (a new port, as a new pod would be); then workers count."""
        assert self.fake_model is not None
        with self._lock:
            front = self._fronts.get(name)
        if front is None or any(st.kind == FRONTEND_KIND and st.action != "stop" for st in steps):
            new = FakeFrontend(self.fake_model).start()
            with self._lock:
                self._fronts[name] = new
            if front is not None:
                front.stop()
            front = new
            self._publish_frontend(name, front.port)
        front.workers = ready_workers(obj)

    def _set_status(
        self, name: str, gen: int, obj: dict[str, Any], state: str, *, ready: bool, reason: str, message: str
    ) -> None:
        replicas = {}
        for svc, want in {**worker_services(obj), FRONTEND: 1}.items():
            have = want if ready else 0
            replicas[svc] = {
                "componentKind": "Deployment",
                "replicas": want,
                "updatedReplicas": want,
                "readyReplicas": have,
                "availableReplicas": have,
            }
            if self.version == V1ALPHA1:
                replicas[svc]["componentName"] = f"{name}-{svc.lower()}"
            else:
                replicas[svc]["componentNames"] = [f"{name}-{svc.lower()}"]
        status = {
            "observedGeneration": gen,
            "state": state,
            "services" if self.version == V1ALPHA1 else "components": replicas,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": _now(),
                    "observedGeneration": gen,
                }
            ],
        }
        self.co.patch_namespaced_custom_object_status(
            GROUP, self.version, self.namespace, PLURAL, name, {"status": status}
        )

    def _fault_pod(self, dgd: str, status: dict[str, Any]) -> None:
        pod_name = f"{dgd}-decode-0"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "labels": {POD_LABEL_DGD: dgd, "nvidia.com/dynamo-component": "decode"}},
            "spec": {"containers": [{"name": "main", "image": "img"}]},
        }
        self.core.create_namespaced_pod(self.namespace, pod)
        self.core.patch_namespaced_pod_status(pod_name, self.namespace, {"status": {"phase": "Pending", **status}})
        reason = (
            status.get("containerStatuses", [{}])[0]
            .get("state", {})
            .get("waiting", {})
            .get("reason", "FailedScheduling")
        )
        self.core.create_namespaced_event(
            self.namespace,
            {
                "metadata": {"name": f"{pod_name}.{int(time.time() * 1000)}"},
                "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": self.namespace, "apiVersion": "v1"},
                "reason": "BackOff" if reason != "FailedScheduling" else reason,
                "type": "Warning",
                "message": f"simulated {reason}",
                "firstTimestamp": _now(),
                "lastTimestamp": _now(),
                "count": 1,
                "source": {"component": "test-operator"},
            },
        )
        self.events.append((f"pod:{reason}", dgd))

    def _publish_frontend(self, dgd: str, port: int) -> None:
        name = frontend_service_name(dgd)
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {POD_LABEL_DGD: dgd}},
            "spec": {
                "type": "LoadBalancer",
                "selector": {POD_LABEL_DGD: dgd},
                "ports": [{"name": "http", "port": port, "targetPort": 8000}],
            },
        }
        try:
            self.core.create_namespaced_service(self.namespace, svc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # a new generation got a new frontend port: replace the Service, as a rollout would update it
            self.core.delete_namespaced_service(name, self.namespace, _preload_content=False)
            self.core.create_namespaced_service(self.namespace, svc)
        self.core.patch_namespaced_service_status(
            name, self.namespace, {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}
        )

    def _teardown(self, name: str) -> None:
        with self._lock:
            running = self._running.pop(name, None)
            front = self._fronts.pop(name, None)
            self._handled.pop(name, None)
            self._specs.pop(name, None)
        if running is not None:
            running.stop()
        if front is not None:
            front.stop()
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{POD_LABEL_DGD}={name}")
        for p in pods.items:
            self.core.delete_namespaced_pod(
                p.metadata.name, self.namespace, grace_period_seconds=0, _preload_content=False
            )
        try:
            # the 37.x client cannot parse the Status a Service delete returns, so skip decoding it
            self.core.delete_namespaced_service(frontend_service_name(name), self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.ledger.gone(name)
        self.events.append(("teardown", name))


def signal_on_event(
    child: subprocess.Popen[str],
    events: list[tuple[str, Any]],
    kind: str,
    sig: int,
    *,
    settle_s: float = 0.0,
    timeout_s: float = 300,  # generous: a busy 2-core machine slows the cleanup the child does after a signal
) -> tuple[str, str]:
    """Wait until the operator records ``kind``, then send ``sig`` to ``child``; its (stdout, stderr).

    The child must still be running while we wait; it is killed if anything goes wrong.
    """
    try:
        deadline = time.monotonic() + timeout_s
        while not any(k == kind for k, _ in events):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.1)
        time.sleep(settle_s)
        os.kill(child.pid, sig)
        out, err = child.communicate(timeout=timeout_s)
        return out or "", err or ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
