"""Routing decisions of a live point, read from the frontend pod's log (RBAC ``pods/log: get``).

Optional evidence: when the log cannot be read the measurement stands, and the point says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from autotune.dynamo import logparse
from autotune.errors import BackendError
from autotune.k8s import POD_LABEL_DGD
from autotune.k8s.client import Kube
from autotune.topology import Topology


def pod_log(kube: Kube, namespace: str, dgd: str, since_s: float) -> tuple[str, str]:
    """The frontend pod's log of the last ``since_s`` seconds, and which pod it came from."""
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"{POD_LABEL_DGD}={dgd}", _request_timeout=10)
    # The ignores: the client types every field Optional; the API server always sets metadata.name.
    fronts = [p for p in pods.items if "frontend" in p.metadata.name]  # type: ignore[union-attr,operator]
    if not fronts:
        raise BackendError("no frontend pod found")
    name: str = fronts[0].metadata.name  # type: ignore[union-attr,assignment]
    return kube.core.read_namespaced_pod_log(
        name, namespace, since_seconds=math.ceil(since_s), _request_timeout=30
    ), f"pod {name}"


def routing_log(read: Callable[[float], tuple[str, str]], burst: Any) -> tuple[logparse.FrontendLog, str]:
    """This burst's routing decisions (``read(seconds back)`` gives the log text) and a note on their source."""
    since_s = time.time() - burst.t0_wall + 5
    try:
        text, source = read(since_s)
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


def worker_index(log: logparse.FrontendLog, topology: Topology) -> dict[int, int]:
    """Instance id → worker index: per role, instance ids in sorted order (stable across points)."""
    roles = topology.worker_tps()
    out: dict[int, int] = {}
    for kind in ("prefill", "decode"):
        role = kind if topology.disaggregated else "agg"
        idx = [i for i, (r, _) in enumerate(roles) if r == role]
        ids = sorted({s.worker_id for s in log.selections if s.worker_type == kind})
        out.update({iid: idx[k] for k, iid in enumerate(ids[: len(idx)])})
    return out
