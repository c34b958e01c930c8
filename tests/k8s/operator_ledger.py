"""The test operator's own record of which graphs held how many GPUs when.

The operator calls ``seen`` for every live DGD it handles and ``gone`` when it tears one down, so the
timeline holds (monotonic time, dgd, GPUs) at creation (the first time the operator sees the graph:
from then on its pods would hold their GPUs) and at teardown (GPUs given back as a negative entry).
GPUs are read from the manifest itself — the GPU limit of every worker pod × replicas × nodes —
not from anything autotune says about it, so the oversubscription check is independent of the leases.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

GPU_LIMITS = ("nvidia.com/gpu", "gpu")  # v1beta1 container limit, v1alpha1 service limit


def _limit(limits: dict[str, Any]) -> int:
    return next((int(limits[k]) for k in GPU_LIMITS if k in limits), 0)


def manifest_gpus(obj: dict[str, Any]) -> int:
    """GPUs a DGD's pods request, in either apiVersion's shape."""
    spec = obj.get("spec") or {}
    total = 0
    for comp in spec.get("components") or []:  # v1beta1
        containers = ((comp.get("podTemplate") or {}).get("spec") or {}).get("containers") or []
        per_pod = sum(_limit((c.get("resources") or {}).get("limits") or {}) for c in containers)
        total += per_pod * int(comp.get("replicas", 1)) * int((comp.get("multinode") or {}).get("nodeCount", 1))
    for svc in (spec.get("services") or {}).values():  # v1alpha1
        per_pod = _limit((svc.get("resources") or {}).get("limits") or {})
        total += per_pod * int(svc.get("replicas", 1)) * int((svc.get("multinode") or {}).get("nodeCount", 1))
    return total


@dataclass
class GpuLedger:
    timeline: list[tuple[float, str, int]] = field(default_factory=list)  # (time, dgd, +GPUs taken / −GPUs freed)
    _held: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, obj: dict[str, Any]) -> None:
        """A live graph: recorded once, when first seen (or again if a new generation changes its GPUs)."""
        name, gpus = obj["metadata"]["name"], manifest_gpus(obj)
        with self._lock:
            before = self._held.get(name)
            if before == gpus:
                return
            self._held[name] = gpus
            self.timeline.append((time.monotonic(), name, gpus - (before or 0)))

    def gone(self, name: str) -> None:
        """Torn down (idempotent: the operator may see the deletion twice)."""
        with self._lock:
            gpus = self._held.pop(name, None)
            if gpus is not None:
                self.timeline.append((time.monotonic(), name, -gpus))

    def peak(self) -> tuple[int, list[str]]:
        """Most GPUs held at once, and by which graphs (a release at the same instant as a take counts first)."""
        with self._lock:
            events = sorted(self.timeline, key=lambda e: (e[0], e[2]))
        held: dict[str, int] = {}
        best, who = 0, []
        for _, name, delta in events:
            held[name] = held.get(name, 0) + delta
            if held[name] <= 0:
                held.pop(name)
            total = sum(held.values())
            if total > best:
                best, who = total, sorted(held)
        return best, who
