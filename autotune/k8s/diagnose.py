"""Why a graph is not coming up, read from its pods and events, long before a readiness deadline.

Unschedulable pods, crash loops and image-pull failures show in pod status minutes before the
DGD would time out (kubernetes.md §2); the reason goes into the trial so the study can move on.
Scheduling and first pull failures get a short grace period because GPUs of the previous
trial may still be draining and registries hiccup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from autotune.k8s import POD_LABEL_DGD
from autotune.k8s.client import Kube, call

# Container waiting reasons that never fix themselves.
FATAL_WAITING = {
    "CrashLoopBackOff": "crash loop",
    "ImagePullBackOff": "image pull failed",
    "InvalidImageName": "invalid image name",
    "ErrImageNeverPull": "image not present and pull policy Never",
    "CreateContainerConfigError": "container config error",
    "CreateContainerError": "container create error",
    "RunContainerError": "container run error",
}
# Reasons that are fatal only when they persist.
SLOW_WAITING = {"ErrImagePull": "image pull failed"}


@dataclass
class Failure:
    kind: str  # "unschedulable" | "crash-loop" | "image-pull" | "pod-failed" | "container"
    reason: str  # one line, for the trial record


@dataclass
class PodWatcher:
    """Remembers when each symptom was first seen so transient ones get ``grace_s``."""

    grace_s: float = 30.0
    first_seen: dict[str, float] = field(default_factory=dict)

    def check(self, kube: Kube, namespace: str, dgd: str) -> Failure | None:
        pods = call(
            lambda: kube.core.list_namespaced_pod(namespace, label_selector=f"{POD_LABEL_DGD}={dgd}"),
            what=f"list pods of {dgd}",
        )
        now = time.monotonic()
        seen: set[str] = set()
        for pod in pods.items:
            found = pod_symptom(kube.api.sanitize_for_serialization(pod))
            if found is None:
                continue
            key, failure, fatal = found
            seen.add(key)
            first = self.first_seen.setdefault(key, now)
            if fatal or now - first >= self.grace_s:
                # The ignore: the client types every field Optional; the API server always sets metadata.name.
                pod_name: str = pod.metadata.name  # type: ignore[union-attr,assignment]
                failure.reason += recent_warnings(kube, namespace, pod_name)
                return failure
        for key in list(self.first_seen):
            if key not in seen:
                del self.first_seen[key]
        return None


def pod_symptom(pod: dict[str, Any]) -> tuple[str, Failure, bool] | None:
    """(symptom key, failure, fatal now?) for the first problem in one pod, else None."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        why = status.get("reason") or "Failed"
        return (
            f"{name}/failed",
            Failure("pod-failed", f"pod {name} failed: {why}: {status.get('message', '')}".rstrip(": ")),
            True,
        )
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            msg = cond.get("message") or "no node fits"
            return f"{name}/unschedulable", Failure("unschedulable", f"pod {name} unschedulable: {msg}"), False
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in FATAL_WAITING or reason in SLOW_WAITING:
            what = FATAL_WAITING.get(reason) or SLOW_WAITING[reason]
            kind = "crash-loop" if reason == "CrashLoopBackOff" else "image-pull" if "Image" in reason else "container"
            text = f"pod {name} container {cs.get('name', '?')}: {what} ({reason})"
            if waiting.get("message"):
                text += f": {waiting['message']}"
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if last:
                text += f"; last exit {last.get('exitCode', '?')} {last.get('reason', '')}".rstrip()
                text += f" after {cs.get('restartCount', 0)} restarts"
            return f"{name}/{cs.get('name')}/{reason}", Failure(kind, text), reason in FATAL_WAITING
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return (
                f"{name}/{cs.get('name')}/oom",
                Failure("container", f"pod {name} container {cs.get('name')}: OOMKilled"),
                False,
            )
    return None


def recent_warnings(kube: Kube, namespace: str, obj_name: str, limit: int = 2) -> str:
    """The newest Warning events about one object, as a suffix; empty if none or unreadable."""
    try:
        events = kube.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={obj_name},type=Warning", _request_timeout=5
        )
    except Exception:  # diagnosis must never turn a clear failure into an API error
        return ""
    items = sorted(
        events.items, key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp or "")
    )
    msgs = [f"{e.reason}: {e.message}" for e in items[-limit:] if e.message]
    return f" [events: {'; '.join(msgs)}]" if msgs else ""
