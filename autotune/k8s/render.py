"""Render one DynamoGraphDeployment per trial from a topology and a profile: the single entry for both apiVersions.

Rendering is pure (no API calls) so ``plan`` and tests can check every manifest against the
real CRD with a server-side dry run before anything is created. The profile's Dynamo version
picks the CRD shape (``nvidia.com/v1alpha1`` before 1.5, ``v1beta1`` from 1.5; ``render_v1alpha1``
and ``render_v1beta1`` hold the shapes); metadata, labels and the pods' contents are the same in both.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from autotune.errors import InputError
from autotune.k8s import (
    ANN_PROFILE,
    ANN_STUDY,
    ANN_TOPOLOGY,
    ANN_TRIAL,
    API_VERSIONS,
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_STUDY,
    LABEL_TRIAL,
    MANAGED_BY,
    V1ALPHA1,
    V1BETA1,
    V1BETA1_SINCE,
    render_v1alpha1,
    render_v1beta1,
)
from autotune.k8s.names import dgd_name, label_value
from autotune.profile import Profile
from autotune.topology import Topology

_SHAPES: dict[str, ModuleType] = {V1ALPHA1: render_v1alpha1, V1BETA1: render_v1beta1}


def api_version_for(profile: Profile) -> str:
    """The DGD apiVersion a profile's Dynamo version expects."""
    return V1BETA1 if profile.dynamo.version_tuple >= V1BETA1_SINCE else V1ALPHA1


def version_of(dgd: dict[str, Any]) -> str:
    """The version part of a DGD's ``apiVersion`` (``nvidia.com/v1beta1`` -> ``v1beta1``)."""
    group, _, version = str(dgd.get("apiVersion", "")).partition("/")
    if group != GROUP or version not in _SHAPES:
        raise InputError(
            f"apiVersion {dgd.get('apiVersion')!r} is not one of {', '.join(_api(v) for v in API_VERSIONS)}"
        )
    return version


def _api(version: str) -> str:
    return f"{GROUP}/{version}"


def render_dgd(
    profile: Profile, topology: Topology, *, study: str, trial_id: str, api_version: str | None = None
) -> dict[str, Any]:
    """The DGD for one trial, as ``api_version`` (default: what the profile's Dynamo version expects).

    Raises ``InputError`` for settings the CRD cannot express.
    """
    version = api_version or api_version_for(profile)
    if version not in _SHAPES:
        raise InputError(f"DGD api version {version!r} is not one of {', '.join(API_VERSIONS)}")
    d = profile.dynamo
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_STUDY: label_value(study), LABEL_TRIAL: label_value(trial_id)}
    annotations = {
        ANN_STUDY: study,
        ANN_TRIAL: trial_id,
        ANN_TOPOLOGY: topology.to_string(),
        ANN_PROFILE: profile.digest(),
    }
    name = dgd_name(study, trial_id)
    return {
        "apiVersion": _api(version),
        "kind": KIND,
        "metadata": {"name": name, "namespace": d.namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backendFramework": d.framework,
            "labels": dict(labels),  # propagated to every child resource and pod, so cleanup finds them
            "annotations": {ANN_STUDY: study, ANN_TRIAL: trial_id},
            **_SHAPES[version].graph_spec(profile, topology),
        },
    }


def worker_services(dgd: dict[str, Any]) -> dict[str, int]:
    """Desired replicas of each worker service (v1alpha1) or component (v1beta1) of a rendered or fetched DGD."""
    replicas: dict[str, int] = _SHAPES[version_of(dgd)].worker_replicas(dgd)
    return replicas


def components(dgd: dict[str, Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Every service (v1alpha1) or component (v1beta1) of a DGD by name: (is it the frontend, its spec)."""
    comps: dict[str, tuple[bool, dict[str, Any]]] = _SHAPES[version_of(dgd)].components(dgd)
    return comps


def worker_status(obj: dict[str, Any]) -> dict[str, Any]:
    """The operator's per-worker replica counts of a fetched DGD, keyed by service/component name."""
    status: dict[str, Any] = _SHAPES[version_of(obj)].replica_status(obj)
    return status


def frontend_container(dgd: dict[str, Any]) -> dict[str, Any]:
    """The container whose args carry the router flags (the frontend's main container), a reference into ``dgd``."""
    container: dict[str, Any] = _SHAPES[version_of(dgd)].frontend_container(dgd)
    return container


def frontend_args_patch(dgd: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """JSON merge patch giving the frontend of ``dgd`` (as read) the ``args``; no worker field changes."""
    patch: dict[str, Any] = _SHAPES[version_of(dgd)].frontend_args_patch(dgd, args)
    return patch
