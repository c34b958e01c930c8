"""k8s/controller.yaml: consistent with itself, and its Role is least privilege, checked by real requests.

The test apiserver authorizes with RBAC, so the ServiceAccount's requests are made for real
(impersonated by the admin): ``K8sActuator`` reads and switches its graph through them, while
patching another graph, deleting its own, reading secrets or listing graphs elsewhere is Forbidden.
(The server-side dry run of every k8s/ manifest is tests/k8s/test_manifests.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import k8s_operator
import pytest
import yaml
from k8s_cluster import REPO
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from test_k8s_actuator import PRESET, FakeFrontend

from autotune.control.k8s_actuator import K8sActuator
from autotune.controller import ControllerSettings
from autotune.dynamo.flags import router_args
from autotune.k8s import API_VERSIONS, GROUP, PLURAL
from autotune.k8s.client import Kube
from autotune.k8s.lifecycle import apply, delete_and_wait, wait_ready
from autotune.k8s.render import render_dgd
from autotune.topology import RouterSettings, parse_topology

pytestmark = pytest.mark.slow
DOCS = [d for d in yaml.safe_load_all((REPO / "k8s" / "controller.yaml").read_text()) if d]
NS = "autotune"


def _doc(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in DOCS if d["kind"] == kind]
    return doc


def _graph_name() -> str:
    (rule,) = [r for r in _doc("Role")["rules"] if "dynamographdeployments" in r["resources"]]
    (name,) = rule["resourceNames"]
    return str(name)


def test_deployment_runs_the_controller_on_the_role_s_graph() -> None:
    pod = _doc("Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert c["command"] == ["autotune"] and args[0] == "control" and "--apply" in args
    assert args[args.index("--dgd") + 1] == _graph_name() and args[args.index("-N") + 1] == NS
    assert pod["serviceAccountName"] == _doc("ServiceAccount")["metadata"]["name"]
    binding = _doc("RoleBinding")
    assert binding["roleRef"]["name"] == _doc("Role")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NS}]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    settings = args[args.index("--settings") + 1]
    (vol,) = [n for n, path in mounts.items() if settings.startswith(path + "/")]
    assert volumes[vol]["configMap"]["name"] == _doc("ConfigMap")["metadata"]["name"]
    assert settings.rsplit("/", 1)[1] in _doc("ConfigMap")["data"]
    port = int(args[args.index("--metrics-port") + 1])
    assert c["ports"] == [{"name": "metrics", "containerPort": port}]
    assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"] and _doc("Deployment")["spec"]["replicas"] == 1


def test_settings_in_the_configmap_are_a_recommendation() -> None:
    rec = yaml.safe_load(_doc("ConfigMap")["data"]["recommended.yaml"])
    assert rec["kind"] == "autotune/Recommendation"
    c = rec["controller"]
    presets = {k: RouterSettings(**v) for k, v in c["presets"].items()}
    settings = ControllerSettings(
        baseline_ttft_p99_ms=c["baseline_ttft_p99_ms"],
        theta1_x=c["theta1_x_baseline"],
        theta2_x=c["theta2_x_baseline"],
        ewma_alpha=c["ewma_alpha"],
        interval_s=c["interval_s"],
        dwell_s=c["dwell_s"],
        hysteresis=c["hysteresis"],
        presets=presets,
    )
    assert settings.as_dict() == c  # exactly what `autotune run` writes for these settings
    version = tuple(int(x) for x in rec["provenance"]["dynamo_version"].split(".")[:2])
    router = RouterSettings(**{k: v for k, v in rec["router"].items() if k != "frontend_args"})
    assert rec["router"]["frontend_args"] == router_args(version, router)  # type: ignore[arg-type]
    assert parse_topology(rec["topology"]["string"]).router == router


def _in(doc: dict[str, Any], ns: str) -> dict[str, Any]:
    """The manifest moved to namespace ``ns`` (a fresh one per test, so the dry runs of test_manifests.py
    never meet these objects)."""
    out = yaml.safe_load(yaml.safe_dump(doc))
    out["metadata"]["namespace"] = ns
    for subject in out.get("subjects") or []:
        subject["namespace"] = ns
    return out


@pytest.fixture
def rbac(kube, namespace) -> str:
    """The controller's ServiceAccount, Role and RoleBinding, created for real in the test's namespace."""
    for doc in DOCS:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            res = dynamic.DynamicClient(kube.api).resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            res.create(body=_in(doc, namespace), namespace=namespace)
    return str(namespace)


def _as_service_account(kube: Kube, ns: str) -> Kube:
    """The admin's connection, impersonating the controller's ServiceAccount (its groups as a pod has them)."""
    api = client.ApiClient(kube.api.configuration)
    sa = _doc("ServiceAccount")["metadata"]["name"]
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{ns}:{sa}")
    api.set_default_header("Impersonate-Group", "system:authenticated")
    return Kube(api, False, "impersonated", None, ns)


@pytest.fixture
def graphs(kube, rbac, api_version) -> Iterator[tuple[str, str, str]]:
    """The Role's graph and another one, both Ready, served by a test operator in the controller's namespace."""
    from k8s_profiles import DYNAMO_RENDERING, make_profile

    ns = rbac
    op = k8s_operator.TestOperator(kube.api, ns, version=api_version, launch=FakeFrontend).start()
    prof = make_profile(version=DYNAMO_RENDERING[api_version], namespace=ns)
    names = []
    for name in (_graph_name(), "other-graph"):
        dgd = render_dgd(prof, parse_topology("1P1-1D1"), study="rbac", trial_id=name, api_version=api_version)
        dgd["metadata"]["name"] = name
        apply(kube, dgd)
        names.append(name)
    try:
        for name in names:
            wait_ready(kube, ns, name, version=api_version, timeout_s=60)
        yield ns, names[0], names[1]
    finally:
        for name in names:
            delete_and_wait(kube, ns, name, version=api_version, timeout_s=60)
        op.stop()


def _forbidden(fn: Any) -> bool:
    try:
        fn()
    except ApiException as exc:
        if exc.status == 403:
            return True
        raise
    return False


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_role_lets_the_controller_switch_its_graph_and_nothing_else(kube, graphs, api_version) -> None:
    ns, mine, other = graphs
    sa = _as_service_account(kube, ns)
    try:
        act = K8sActuator(sa, mine, ns, frontend_access="load-balancer")  # discovery: any authenticated user
        assert act.api_version == api_version and act.current() == RouterSettings()
        res = act.apply(PRESET)  # get, patch, list+watch by name, pods list, services get: all it needs
        assert act.current() == PRESET and "generation 2" in res.detail
        act.close()
        co, core = sa.custom, sa.core
        patch = {"metadata": {"labels": {"touched": "yes"}}}
        denied = {
            "patch another graph": lambda: co.patch_namespaced_custom_object(
                GROUP, api_version, ns, PLURAL, other, patch
            ),
            "get another graph": lambda: co.get_namespaced_custom_object(GROUP, api_version, ns, PLURAL, other),
            "list every graph": lambda: co.list_namespaced_custom_object(GROUP, api_version, ns, PLURAL),
            "delete its graph": lambda: co.delete_namespaced_custom_object(GROUP, api_version, ns, PLURAL, mine),
            "create a graph": lambda: co.create_namespaced_custom_object(
                GROUP, api_version, ns, PLURAL, {"apiVersion": f"{GROUP}/{api_version}", "kind": "X"}
            ),
            "patch its graph's status": lambda: co.patch_namespaced_custom_object_status(
                GROUP, api_version, ns, PLURAL, mine, {"status": {"state": "failed"}}
            ),
            "list graphs elsewhere": lambda: co.list_namespaced_custom_object(GROUP, api_version, "default", PLURAL),
            "read secrets": lambda: core.list_namespaced_secret(ns),
            "read configmaps": lambda: core.list_namespaced_config_map(ns),
            "delete a pod": lambda: core.delete_collection_namespaced_pod(ns),
            "patch a service": lambda: core.patch_namespaced_service(f"{mine}-frontend", ns, patch),
            "list pods cluster-wide": lambda: core.list_pod_for_all_namespaces(),
        }
        for what, fn in denied.items():
            assert _forbidden(fn), what
        assert not _forbidden(lambda: core.list_namespaced_pod(ns))
    finally:
        sa.close()
    stored = kube.custom.get_namespaced_custom_object(GROUP, api_version, ns, PLURAL, other)
    assert "touched" not in (stored["metadata"].get("labels") or {}) and stored["metadata"]["generation"] == 1
