"""One trial's graph on the cluster: server-side apply, wait for readiness by watch, delete until gone.

Readiness is the operator's word plus counts (dynamo.md §1): generation observed, Ready=True and
state successful, every worker service at its replicas, no rolling update in flight. The watch
runs in short slices so pod symptoms are checked between them, and a lost or expired watch is
re-established from the last resourceVersion (or relisted after 410 Gone). Every call names the graph's
apiVersion (``v1alpha1`` or ``v1beta1``): the one it was rendered in, which the cluster must serve.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from autotune.errors import BackendError
from autotune.k8s import FIELD_MANAGER, GROUP, PLURAL, POD_LABEL_DGD
from autotune.k8s.client import DEFAULT_BACKOFF, Backoff, Kube, call, describe, is_transient
from autotune.k8s.diagnose import PodWatcher, recent_warnings
from autotune.k8s.render import version_of, worker_services, worker_status


class TrialFailed(BackendError):
    """The graph did not come up; ``kind`` classifies why, ``reason`` is the line for the trial record."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"trial failed ({kind}): {reason}")


@dataclass
class Readiness:
    ready: bool
    failed: str | None  # operator-reported failure
    waiting_for: str  # what is still missing, for the deadline message


def apply(kube: Kube, dgd: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Server-side apply as field manager "autotune"; returns the object the server stored (or would)."""
    md = dgd["metadata"]
    version = version_of(dgd)
    kw: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
    resp = call(
        lambda: kube.custom.patch_namespaced_custom_object(
            GROUP,
            version,
            md["namespace"],
            PLURAL,
            md["name"],
            dgd,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
            **kw,  # the generated client maps only 200, so a 201 Created would read as None
        ),
        what=f"apply {md['name']}{' (dry run)' if dry_run else ''}",
        on_conflict=lambda: None,  # SSA re-sends the whole intent; nothing to re-read
    )
    return json.loads(cast(urllib3.BaseHTTPResponse, resp).data)  # _preload_content=False: the raw response


def readiness(obj: dict[str, Any]) -> Readiness:
    """Evaluate one DGD against the readiness gate; pure, so tests and the watch share it."""
    md, st = obj.get("metadata", {}), obj.get("status") or {}
    if st.get("observedGeneration") != md.get("generation"):
        return Readiness(False, None, f"operator to observe generation {md.get('generation')}")
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    cond: dict[str, Any] = conds.get("Ready") or conds.get("Available") or {}  # v1beta1 may say Available
    state = st.get("state", "")
    if state == "failed":
        return Readiness(False, cond.get("message") or cond.get("reason") or "state failed", "")
    if state != "successful" or cond.get("status") != "True":
        detail = cond.get("message") or cond.get("reason") or ""
        return Readiness(False, None, f"Ready (state {state or 'unset'}{': ' + detail if detail else ''})")
    if (st.get("rollingUpdate") or {}).get("phase") in ("Pending", "InProgress"):
        return Readiness(False, None, "rolling update to finish")
    have = {k.lower(): v for k, v in worker_status(obj).items()}
    for svc, want in worker_services(obj).items():
        s = have.get(svc.lower())
        if s is None:
            return Readiness(False, None, f"status of service {svc}")
        avail = max(s.get("availableReplicas") or 0, s.get("readyReplicas") or 0)
        if not (s.get("replicas") == want and s.get("updatedReplicas") == want and avail >= want):
            return Readiness(False, None, f"{svc} replicas {avail}/{want} available")
    return Readiness(True, None, "")


def _get(kube: Kube, ns: str, name: str, version: str) -> tuple[dict[str, Any] | None, str]:
    """The object (or None) and a resourceVersion to watch from."""
    lst: Any = call(  # a JSON dict (the generated client types custom objects as object)
        lambda: kube.custom.list_namespaced_custom_object(
            GROUP, version, ns, PLURAL, field_selector=f"metadata.name={name}"
        ),
        what=f"list {name}",
    )
    items = lst.get("items") or []
    return (items[0] if items else None), lst["metadata"]["resourceVersion"]


def watch_until(
    kube: Kube,
    ns: str,
    name: str,
    done: Callable[[dict[str, Any] | None], bool],
    *,
    version: str,
    deadline: float,
    slice_s: float = 2.0,
    between: Callable[[], None] | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> dict[str, Any] | None:
    """Watch one DGD until ``done(obj)`` (obj None = deleted) or the monotonic ``deadline``.

    Returns the last object; raises ``TimeoutError`` at the deadline. ``between`` runs after each
    slice (pod diagnosis); watches that drop, expire (410) or fail transiently are re-established.
    """
    rv: str | None = None
    obj: dict[str, Any] | None = None
    delays = backoff.delays()
    while True:
        if rv is None:
            obj, rv = _get(kube, ns, name, version)
            if done(obj):
                return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(name)
        w = watch.Watch()
        timeout = max(1, math.ceil(min(remaining, slice_s)))
        try:
            for ev in w.stream(
                kube.custom.list_namespaced_custom_object,
                GROUP,
                version,
                ns,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _request_timeout=(5, timeout + 10),
            ):
                kind, o = ev["type"], ev["raw_object"]
                if kind == "ERROR":
                    rv = None if o.get("code") == 410 else rv  # expired: relist; else retry from rv
                    break
                rv = o.get("metadata", {}).get("resourceVersion", rv)
                if kind == "BOOKMARK":
                    continue
                obj = None if kind == "DELETED" else o
                if done(obj):
                    return obj
            delays = backoff.delays()
        except ApiException as exc:
            if exc.status == 410:
                rv = None
            elif not is_transient(exc):
                raise BackendError(f"kubernetes: watch {name}: {describe(exc)}") from exc
            else:
                time.sleep(min(next(delays), max(0.0, deadline - time.monotonic())))
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
            time.sleep(min(next(delays), max(0.0, deadline - time.monotonic())))  # lost watch: re-establish
        finally:
            w.stop()
        if between is not None:
            between()


def wait_ready(
    kube: Kube,
    ns: str,
    name: str,
    *,
    version: str,
    timeout_s: float,
    pods: PodWatcher | None = None,
    slice_s: float = 2.0,
) -> dict[str, Any]:
    """Block until the DGD passes ``readiness``; ``TrialFailed`` on operator failure, pod failure or deadline."""
    deadline = time.monotonic() + timeout_s
    pods = pods or PodWatcher()
    last: dict[str, Readiness] = {}

    def done(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            raise TrialFailed("deleted", f"{name} was deleted while waiting for it to become ready")
        r = last["r"] = readiness(obj)
        if r.failed:
            raise TrialFailed("operator", f"operator marked {name} failed: {r.failed}")
        return r.ready

    def between() -> None:
        failure = pods.check(kube, ns, name)
        if failure is not None:
            raise TrialFailed(failure.kind, failure.reason)

    try:
        obj = watch_until(kube, ns, name, done, version=version, deadline=deadline, slice_s=slice_s, between=between)
    except TimeoutError:
        waiting = last["r"].waiting_for if "r" in last else "the object to appear"
        raise TrialFailed(
            "deadline", f"not ready after {timeout_s:g} s: waiting for {waiting}{recent_warnings(kube, ns, name)}"
        ) from None
    assert obj is not None
    return obj


def delete(kube: Kube, ns: str, name: str, *, version: str) -> bool:
    """Request deletion; False if it was already gone. Background propagation: the DGD goes at once and
    its children are garbage-collected, which ``wait_gone`` then waits for through the pods."""
    try:
        call(
            lambda: kube.custom.delete_namespaced_custom_object(
                GROUP, version, ns, PLURAL, name, propagation_policy="Background"
            ),
            what=f"delete {name}",
        )
    except BackendError as exc:
        if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
            return False
        raise
    return True


def wait_gone(kube: Kube, ns: str, name: str, *, version: str, timeout_s: float = 300.0, pods: bool = True) -> None:
    """Until the DGD (finalizers included) and, when ``pods``, its pods no longer exist."""
    deadline = time.monotonic() + timeout_s
    try:
        watch_until(kube, ns, name, lambda o: o is None, version=version, deadline=deadline)
    except TimeoutError:
        raise BackendError(
            f"kubernetes: {name} still exists {timeout_s:g} s after deletion (a finalizer the operator did not remove?)"
        ) from None
    if not pods:
        return
    selector = f"{POD_LABEL_DGD}={name}"
    pause = 0.05
    while True:
        left = call(
            lambda: kube.core.list_namespaced_pod(ns, label_selector=selector, limit=1), what=f"list pods of {name}"
        )
        if not left.items:
            return
        if time.monotonic() > deadline:
            raise BackendError(f"kubernetes: pods of {name} still exist {timeout_s:g} s after deletion")
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def delete_and_wait(kube: Kube, ns: str, name: str, *, version: str, timeout_s: float = 300.0) -> None:
    """Delete and block until gone; idempotent (already gone is fine)."""
    delete(kube, ns, name, version=version)
    wait_gone(kube, ns, name, version=version, timeout_s=timeout_s)
