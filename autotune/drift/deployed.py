"""The graph that is deployed on Kubernetes: its topology (from autotune's annotation) and its frontend.

Drift compares a graph with the study's prediction *for that graph*; a DGD running another topology
(hand-edited, or a later study's) is refused with both named, instead of being compared with figures
that were never predicted for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.errors import BackendError, InputError
from autotune.k8s import ANN_TOPOLOGY, GROUP, PLURAL
from autotune.k8s.access import FrontendAccess, open_frontend
from autotune.k8s.client import Kube, call
from autotune.k8s.housekeeping import served_version
from autotune.topology import Topology, parse_topology


@dataclass
class DeployedGraph:
    name: str
    namespace: str
    topology: Topology | None  # None: the DGD carries no autotune topology annotation
    access: FrontendAccess

    def close(self) -> None:
        self.access.close()


def open_deployed(kube: Kube, namespace: str, name: str, *, access_mode: str = "auto") -> DeployedGraph:
    version = served_version(kube)
    obj: Any = call(
        lambda: kube.custom.get_namespaced_custom_object(GROUP, version, namespace, PLURAL, name),
        what=f"read DynamoGraphDeployment {namespace}/{name}",
    )
    if not isinstance(obj, dict):
        raise BackendError(f"kubernetes: DynamoGraphDeployment {namespace}/{name}: unexpected answer")
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_TOPOLOGY)
    topo = parse_topology(text, flag=f"DynamoGraphDeployment {namespace}/{name}: {ANN_TOPOLOGY}") if text else None
    return DeployedGraph(name, namespace, topo, open_frontend(kube, namespace, name, mode=access_mode))


def check_same_graph(deployed: DeployedGraph, predicted: Topology) -> None:
    """Refuse to compare a graph with another graph's prediction (router settings may differ: a controller moves them)."""
    if deployed.topology is None:
        return
    if deployed.topology.with_router(predicted.router) != predicted:
        raise InputError(
            f"--dgd {deployed.namespace}/{deployed.name}: runs {deployed.topology}, but the study recommended "
            f"{predicted}; pass the study whose recommendation is deployed"
        )
