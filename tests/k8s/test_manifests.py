"""The k8s/ manifests for running autotune in a cluster: server-side dry run, least privilege, profile.

CronJob is ``batch/v1`` (1.21+); the 1.20 test server only serves ``batch/v1beta1`` with the same
spec, so the test sends it under that version (test-only, like the CRD rewrite).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_cluster import REPO
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from autotune.k8s.housekeeping import pruned_paths
from autotune.profile import load_profile

pytestmark = pytest.mark.slow
MANIFESTS = REPO / "k8s"
NS = "autotune"
SA = f"system:serviceaccount:{NS}:autotune"
# ... except ttlSecondsAfterFinished: alpha behind a feature gate in 1.20 (dropped there), GA since 1.23
K120_FEATURE_GATED = {"spec.ttlSecondsAfterFinished", "spec.jobTemplate.spec.ttlSecondsAfterFinished"}
# ... and completionMode: Indexed Jobs are alpha in 1.21, GA in 1.24 (k8s/workers.yaml says 1.22+)
K120_NEWER_FIELDS = {"spec.completionMode"}


def _docs() -> list[dict[str, Any]]:
    out = []
    for f in sorted(MANIFESTS.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _docs() if d["kind"] == kind and d["metadata"].get("name") == name)


def _for_k120(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob" and doc["apiVersion"] == "batch/v1":
        return {**doc, "apiVersion": "batch/v1beta1"}
    return doc


@pytest.fixture
def autotune_ns(kube) -> str:
    try:
        kube.core.create_namespace({"metadata": {"name": NS}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    return NS


def test_manifest_set_is_complete() -> None:
    kinds = sorted(d["kind"] for d in _docs())
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "CronJob",
        "Deployment",
        "Deployment",
        "Job",
        "Job",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ]  # the controller (k8s/controller.yaml) brings its own ConfigMap, Deployment and RBAC
    cron = next(d for d in _docs() if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = next(d for d in _docs() if d["kind"] == "Job")
    for job_spec in (cron["spec"]["jobTemplate"]["spec"], job["spec"]):
        pod = job_spec["template"]["spec"]
        assert job_spec["activeDeadlineSeconds"] > 0 and pod["serviceAccountName"] == "autotune"
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["data"]["persistentVolumeClaim"]["claimName"] == "autotune-data"
        assert vols["profile"]["configMap"]["name"] == "autotune-profile"
    study = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--backend k8s" in study and "--resume" in study
    # the nightly job probes the deployed graph (docs/drift.md); exit 10 must not be retried
    nightly = cron["spec"]["jobTemplate"]["spec"]
    drift = nightly["template"]["spec"]["containers"][0]["args"][0]
    assert "autotune drift" in drift and "--k8s" in drift and "/data/drift" in drift and nightly["backoffLimit"] == 0


def _create(kube, doc: dict[str, Any], **kw: Any) -> Any:
    """Create through discovery (the typed 37.x client has no batch/v1beta1)."""
    res = dynamic.DynamicClient(kube.api).resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return res.create(body=doc, namespace=doc["metadata"].get("namespace"), **kw)


def test_manifests_pass_server_side_dry_run(kube, autotune_ns) -> None:
    for doc in _docs():
        sent = _for_k120(doc)
        stored = _create(kube, sent, dry_run="All").to_dict()
        assert stored["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "autotune"
        if doc["kind"] in ("Job", "CronJob", "Deployment"):  # no field of ours pruned (1.20 prunes silently) ...
            lost = set(pruned_paths(sent["spec"], stored["spec"], "spec")) - K120_FEATURE_GATED - K120_NEWER_FIELDS
            assert lost == set(), doc["kind"]
    assert kube.core.list_namespaced_config_map(NS, label_selector="app.kubernetes.io/name=autotune").items == []


def test_workers_job_shares_one_postgresql_study() -> None:
    """N pods of an Indexed Job, one study (named after the Job), the URL from a Secret, never in the args."""
    job = next(d for d in _docs() if d["kind"] == "Job" and d["metadata"]["generateName"] == "autotune-workers-")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 2
    container = spec["template"]["spec"]["containers"][0]
    args = container["args"][0]
    assert "autotune worker" in args and '--study "$AUTOTUNE_STUDY"' in args and "postgresql://" not in args
    env = {e["name"]: e for e in container["env"]}
    assert env["AUTOTUNE_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "autotune-postgres", "key": "url"}
    assert "job-completion-index" in env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    pg = _named("Deployment", "autotune-postgres")
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "autotune-postgres"
    svc = next(d for d in _docs() if d["kind"] == "Service")
    assert svc["spec"]["selector"] == pg["spec"]["selector"]["matchLabels"]


def test_profile_in_configmap_is_valid(tmp_path: Path) -> None:
    cm = _named("ConfigMap", "autotune-profile")
    path = tmp_path / "profile.yaml"
    path.write_text(cm["data"]["profile.yaml"])
    prof = load_profile(path)
    assert prof.dynamo.namespace == NS  # the Role only covers this namespace


def _can(kube, verb: str, resource: str, group: str = "", sub: str = "", ns: str = NS) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=SA,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{NS}"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=ns, verb=verb, group=group, resource=resource, subresource=sub or None
            ),
        )
    )
    return client.AuthorizationV1Api(kube.api).create_subject_access_review(review).status.allowed


def test_role_is_least_privilege(kube, autotune_ns) -> None:
    """Create the RBAC objects for real and ask the authorizer what the ServiceAccount may do."""
    for doc in _docs():
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            try:
                _create(kube, doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise
    needed = [
        (v, "dynamographdeployments", "nvidia.com", "") for v in ("get", "list", "watch", "create", "patch", "delete")
    ]
    needed += [
        ("get", "dynamographdeployments", "nvidia.com", "status"),
        ("list", "pods", "", ""),
        ("list", "events", "", ""),
        ("get", "pods", "", "log"),
        ("get", "services", "", ""),
    ]
    for verb, res, group, sub in needed:
        assert _can(kube, verb, res, group, sub), (verb, res, sub)
    denied = [
        ("update", "dynamographdeployments", "nvidia.com", ""),
        ("patch", "dynamographdeployments", "nvidia.com", "status"),
        ("deletecollection", "dynamographdeployments", "nvidia.com", ""),
        ("delete", "pods", "", ""),
        ("create", "pods", "", "exec"),
        ("create", "pods", "", "portforward"),
        ("get", "secrets", "", ""),
        ("list", "configmaps", "", ""),
        ("create", "services", "", ""),
    ]
    for verb, res, group, sub in denied:
        assert not _can(kube, verb, res, group, sub), (verb, res, sub)
    assert not _can(kube, "list", "dynamographdeployments", "nvidia.com", ns="default")  # namespaced only


def test_service_account_may_discover_the_dgd_versions(kube, autotune_ns) -> None:
    """``autotune cleanup`` without a profile asks discovery which DGD version the cluster serves."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=SA,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
            non_resource_attributes=client.V1NonResourceAttributes(path="/apis/nvidia.com/v1beta1", verb="get"),
        )
    )
    assert client.AuthorizationV1Api(kube.api).create_subject_access_review(review).status.allowed
