"""``nvidia.com/v1beta1`` graph shape (Dynamo >= 1.5): ``spec.components``, a list keyed by ``name``.

Each component has a ``type`` (``prefill``/``decode`` are first-class) and a native pod template;
the operator merges its defaults into the container named ``main``, which carries the image,
command, args, env, ``envFrom`` and the ``nvidia.com/gpu`` limit (../dynamo/crd-v1beta1/README.md).
"""

from __future__ import annotations

import copy
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

MAIN_CONTAINER = "main"
GPU_RESOURCE = "nvidia.com/gpu"


def _worker_component(profile: Profile, w: Worker) -> dict[str, Any]:
    d = profile.dynamo
    main: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": d.image,
        "command": worker_command(profile),
        "args": worker_args(profile, w.role, w.tp),
        "resources": {"limits": {GPU_RESOURCE: str(w.gpus_per_pod)}},  # per pod; multinode multiplies
    }
    if env := secret_envs(d.extra_worker_args):
        main["env"] = env
    if d.secrets:
        main["envFrom"] = [{"secretRef": {"name": s}} for s in d.secrets]
    comp: dict[str, Any] = {
        "name": w.name,
        "type": "worker" if w.role == "agg" else w.role,
        "replicas": w.replicas,
        "podTemplate": {"spec": {"containers": [main]}},
    }
    if w.node_count is not None:
        comp["multinode"] = {"nodeCount": w.node_count}
    return comp


def graph_spec(profile: Profile, topology: Topology) -> dict[str, Any]:
    """The ``spec.components`` part of the graph (the caller adds labels, annotations, backend)."""
    main = {
        "name": MAIN_CONTAINER,
        "image": profile.dynamo.image,
        "command": FRONTEND_COMMAND,
        "args": frontend_args(profile, topology),
        "env": frontend_env(profile),
    }
    frontend = {"name": FRONTEND, "type": "frontend", "replicas": 1, "podTemplate": {"spec": {"containers": [main]}}}
    return {"components": [frontend] + [_worker_component(profile, w) for w in workers(profile, topology)]}


def worker_replicas(dgd: dict[str, Any]) -> dict[str, int]:
    """Desired replicas of each worker component."""
    return {
        c["name"]: int(c.get("replicas", 1))
        for c in dgd.get("spec", {}).get("components") or []
        if c.get("type") != "frontend"
    }


def components(dgd: dict[str, Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Every component by name, with whether it is the frontend."""
    return {c["name"]: (c.get("type") == "frontend", c) for c in dgd.get("spec", {}).get("components") or []}


def replica_status(obj: dict[str, Any]) -> dict[str, Any]:
    """Per-component replica counts the operator reports, keyed by component name."""
    return (obj.get("status") or {}).get("components") or {}


def _frontend_index(dgd: dict[str, Any]) -> int:
    comps = dgd.get("spec", {}).get("components") or []
    found = [i for i, c in enumerate(comps) if c.get("type") == "frontend"]
    if len(found) != 1:
        raise InputError(f"DGD {dgd.get('metadata', {}).get('name')}: {len(found)} frontend components, expected 1")
    return found[0]


def frontend_container(dgd: dict[str, Any]) -> dict[str, Any]:
    """The frontend component's ``main`` container, as a reference into ``dgd``."""
    comp = dgd["spec"]["components"][_frontend_index(dgd)]
    for c in ((comp.get("podTemplate") or {}).get("spec") or {}).get("containers") or []:
        if c.get("name") == MAIN_CONTAINER:
            container: dict[str, Any] = c
            return container
    raise InputError(f"DGD {dgd.get('metadata', {}).get('name')}: frontend has no container named {MAIN_CONTAINER!r}")


def frontend_args_patch(dgd: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """JSON merge patch setting the frontend's args. A CRD list is replaced whole by a merge patch, so it
    carries every component as read, only the frontend's args changed; the caller pins resourceVersion."""
    comps = copy.deepcopy(dgd["spec"]["components"])
    frontend_container({"metadata": dgd.get("metadata", {}), "spec": {"components": comps}})["args"] = list(args)
    return {"spec": {"components": comps}}
