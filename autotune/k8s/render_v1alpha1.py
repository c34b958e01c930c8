"""``nvidia.com/v1alpha1`` graph shape (Dynamo < 1.5): ``spec.services``, a map of service name to service.

Per service: ``componentType``/``subComponentType``, ``resources.limits.gpu`` (a string),
``envs``/``envFromSecret`` and ``extraPodSpec.mainContainer`` (dynamo.md §1).
"""

from __future__ import annotations

from typing import Any

from autotune.errors import InputError
from autotune.k8s.containers import (
    FRONTEND_COMMAND,
    Worker,
    frontend_args,
    frontend_env,
    secret_envs,
    worker_args,
    worker_command,
    workers,
)
from autotune.k8s.names import FRONTEND
from autotune.profile import Profile
from autotune.topology import Topology


def _worker_service(profile: Profile, w: Worker) -> dict[str, Any]:
    d = profile.dynamo
    container: dict[str, Any] = {
        "image": d.image,
        "command": worker_command(profile),
        "args": worker_args(profile, w.role, w.tp),
    }
    svc: dict[str, Any] = {
        "componentType": "worker",
        "subComponentType": "decode" if w.role == "agg" else w.role,  # planner/profiler find P/D by it
        "replicas": w.replicas,
        "resources": {"limits": {"gpu": str(w.gpus_per_pod)}},
        "extraPodSpec": {"mainContainer": container},
    }
    if envs := secret_envs(d.extra_worker_args):
        svc["envs"] = envs
    if w.node_count is not None:
        svc["multinode"] = {"nodeCount": w.node_count}
    if d.secrets:
        svc["envFromSecret"] = d.secrets[0]
        if len(d.secrets) > 1:
            container["envFrom"] = [{"secretRef": {"name": s}} for s in d.secrets[1:]]
    return svc


def graph_spec(profile: Profile, topology: Topology) -> dict[str, Any]:
    """The ``spec.services`` part of the graph (the caller adds labels, annotations, backend)."""
    frontend = {
        "componentType": "frontend",
        "replicas": 1,
        "envs": frontend_env(profile),
        "extraPodSpec": {
            "mainContainer": {
                "image": profile.dynamo.image,
                "command": FRONTEND_COMMAND,
                "args": frontend_args(profile, topology),
            }
        },
    }
    services: dict[str, Any] = {FRONTEND: frontend}
    for w in workers(profile, topology):
        services[w.name] = _worker_service(profile, w)
    return {"services": services}


def worker_replicas(dgd: dict[str, Any]) -> dict[str, int]:
    """Desired replicas of each worker service."""
    return {
        k: int(v.get("replicas", 1))
        for k, v in dgd.get("spec", {}).get("services", {}).items()
        if v.get("componentType") != "frontend"
    }


def components(dgd: dict[str, Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Every service by name, with whether it is the frontend."""
    services: dict[str, Any] = dgd.get("spec", {}).get("services") or {}
    return {k: (v.get("componentType") == "frontend", v) for k, v in services.items()}


def replica_status(obj: dict[str, Any]) -> dict[str, Any]:
    """Per-service replica counts the operator reports, keyed by service name."""
    return (obj.get("status") or {}).get("services") or {}


def _frontend_key(dgd: dict[str, Any]) -> str:
    services = dgd.get("spec", {}).get("services") or {}
    keys = [k for k, v in services.items() if v.get("componentType") == "frontend"]
    if len(keys) != 1:
        raise InputError(f"DGD {dgd.get('metadata', {}).get('name')}: {len(keys)} frontend services, expected 1")
    return keys[0]


def frontend_container(dgd: dict[str, Any]) -> dict[str, Any]:
    """The frontend's main container (``extraPodSpec.mainContainer``), as a reference into ``dgd``."""
    svc = dgd["spec"]["services"][_frontend_key(dgd)]
    container: dict[str, Any] = (svc.get("extraPodSpec") or {}).get("mainContainer") or {}
    return container


def frontend_args_patch(dgd: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """JSON merge patch setting the frontend's args; the other services are not in it, so they stay as they are."""
    return {"spec": {"services": {_frontend_key(dgd): {"extraPodSpec": {"mainContainer": {"args": args}}}}}}
