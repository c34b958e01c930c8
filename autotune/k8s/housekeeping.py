"""Study-level cluster chores: remove leftovers by label, reconcile on resume, plan by dry run.

A killed autotune (SIGKILL, node loss) can leave graphs holding GPUs; every graph carries the
``managed-by``/``study``/``trial`` labels, so these functions find them without local state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from autotune.errors import BackendError
from autotune.k8s import ANN_STUDY, ANN_TRIAL, API_VERSIONS, GROUP, PLURAL, study_selector
from autotune.k8s.client import Kube, call
from autotune.k8s.lifecycle import apply, delete, wait_gone
from autotune.k8s.names import label_value
from autotune.k8s.render import version_of


@dataclass(frozen=True)
class Leftover:
    name: str
    namespace: str
    study: str
    trial_id: str
    state: str  # status.state, or "" when the operator never wrote one


def served_version(kube: Kube) -> str:
    """The newest DGD apiVersion the cluster serves, by discovery (any authenticated user may ask).

    For chores without a profile: the operator converts between served versions, so any one lists
    every graph.
    """
    for version in reversed(API_VERSIONS):
        try:
            found: Any = call(
                lambda v=version: kube.custom.get_api_resources(GROUP, v),  # type: ignore[misc]
                what=f"discover {GROUP}/{version}",
            )
        except BackendError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                continue  # the group/version is not served at all
            raise
        if any(r.name == PLURAL for r in found.resources or []):
            return version
    raise BackendError(f"kubernetes: the cluster serves no {PLURAL}.{GROUP} (is Dynamo's operator installed?)")


def list_leftovers(kube: Kube, namespace: str, study: str | None = None, *, version: str) -> list[Leftover]:
    """Graphs autotune made in ``namespace`` (one study, or all), listed as ``version``."""
    sel = study_selector(label_value(study) if study else None)
    lst: Any = call(  # a JSON dict (the generated client types custom objects as object)
        lambda: kube.custom.list_namespaced_custom_object(GROUP, version, namespace, PLURAL, label_selector=sel),
        what=f"list autotune graphs in {namespace}",
    )
    out = []
    for o in lst.get("items") or []:
        md = o.get("metadata", {})
        ann = md.get("annotations") or {}
        if study is not None and ann.get(ANN_STUDY, study) != study:
            continue  # label values are truncated; the annotation has the full study name
        out.append(
            Leftover(
                md["name"],
                namespace,
                ann.get(ANN_STUDY, ""),
                ann.get(ANN_TRIAL, ""),
                (o.get("status") or {}).get("state", ""),
            )
        )
    return sorted(out, key=lambda x: x.name)


def cleanup(
    kube: Kube,
    namespace: str,
    study: str | None = None,
    *,
    version: str,
    wait: bool = True,
    timeout_s: float = 300.0,
) -> list[Leftover]:
    """Delete every autotune graph (of one study) in ``namespace`` and wait until gone; returns what went."""
    found = list_leftovers(kube, namespace, study, version=version)
    for lo in found:  # request all deletions first so the operator tears them down in parallel
        delete(kube, namespace, lo.name, version=version)
    if wait:
        for lo in found:
            wait_gone(kube, namespace, lo.name, version=version, timeout_s=timeout_s)
    return found


@dataclass
class Reconciliation:
    """What ``run --resume`` found in the cluster: graphs of finished trials and of interrupted ones."""

    removed: list[Leftover] = field(default_factory=list)
    interrupted_trials: list[str] = field(default_factory=list)  # no result recorded: mark failed, then go on


def reconcile(
    kube: Kube, namespace: str, study: str, finished_trials: set[str], *, version: str, timeout_s: float = 300.0
) -> Reconciliation:
    """Before a resumed study starts, nothing of it may still run: every graph of the study is removed.

    Trials whose graphs were still there but that have no recorded result were interrupted
    mid-flight (SIGKILL, lost node); the caller records them as failed with that reason.
    """
    rec = Reconciliation(removed=cleanup(kube, namespace, study, version=version, timeout_s=timeout_s))
    rec.interrupted_trials = sorted({lo.trial_id for lo in rec.removed if lo.trial_id not in finished_trials})
    return rec


@dataclass(frozen=True)
class PlanCheck:
    name: str
    ok: bool
    detail: str  # error, pruned fields, or "would create"/"would update"


def pruned_paths(sent: Any, got: Any, path: str = "") -> list[str]:
    """Fields we sent that the server dropped: 1.20-era servers prune unknown fields silently."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [path or "."]
        out: list[str] = []
        for k, v in sent.items():
            out += pruned_paths(v, got[k], f"{path}.{k}") if k in got else [f"{path}.{k}"]
        return out
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [path]
        return [p for i, (a, b) in enumerate(zip(sent, got, strict=True)) for p in pruned_paths(a, b, f"{path}[{i}]")]
    return [] if sent == got else [f"{path} (sent {sent!r}, stored {got!r})"]


def plan(kube: Kube, dgds: list[dict[str, Any]]) -> list[PlanCheck]:
    """Validate rendered graphs against the cluster's CRD by server-side dry-run apply; creates nothing."""
    checks = []
    for dgd in dgds:
        md, version = dgd["metadata"], version_of(dgd)
        try:
            # A JSON dict, as above. The ignore: mypy cannot infer a lambda with default arguments (for B023).
            found: Any = call(
                lambda md=md, v=version: kube.custom.list_namespaced_custom_object(  # type: ignore[misc]
                    GROUP, v, md["namespace"], PLURAL, field_selector=f"metadata.name={md['name']}"
                ),
                what=f"look up {md['name']}",
            )
            exists = bool(found.get("items"))
            stored = apply(kube, dgd, dry_run=True)
        except BackendError as exc:
            checks.append(PlanCheck(md["name"], False, str(exc)))
            continue
        lost = pruned_paths(dgd["spec"], stored.get("spec", {}), "spec")
        if lost:
            checks.append(PlanCheck(md["name"], False, "fields not in the CRD schema: " + ", ".join(lost)))
        else:
            checks.append(PlanCheck(md["name"], True, "would update (exists)" if exists else "would create"))
    return checks


def sweep_trials(
    kube: Kube, namespace: str, study: str, trial_ids: set[str], *, version: str, timeout_s: float = 300.0
) -> list[Leftover]:
    """Delete the graphs of some trials of ``study`` (a dead worker's), by label, and wait until gone."""
    found = [lo for lo in list_leftovers(kube, namespace, study, version=version) if lo.trial_id in trial_ids]
    for lo in found:
        delete(kube, namespace, lo.name, version=version)
    for lo in found:
        wait_gone(kube, namespace, lo.name, version=version, timeout_s=timeout_s)
    return found
