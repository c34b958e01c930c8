"""``K8sActuator`` against the real apiserver and the test operator, with a stand-in frontend (no Dynamo).

Concurrency (409 → re-read, retry, the other writer's change kept), a missing graph, a graph that
does not come back Ready, and ``make_k8s_actuator`` from a kubeconfig. The real frontend restart is
tests/k8s/test_controller_k8s.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from k8s_cluster import EXAMPLES_DIRS
from k8s_profiles import DYNAMO_RENDERING, make_profile

from autotune.control.k8s_actuator import K8sActuator, make_k8s_actuator
from autotune.errors import BackendError, InputError
from autotune.k8s import API_VERSIONS, GROUP, PLURAL, V1ALPHA1, V1BETA1
from autotune.k8s.client import KubeOptions
from autotune.k8s.lifecycle import apply, wait_ready
from autotune.k8s.render import render_dgd
from autotune.topology import RouterSettings, parse_topology

pytestmark = pytest.mark.slow
PRESET = RouterSettings(temperature=0.7, overlap_weight=0.5)


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class FakeFrontend:
    """Answers /v1/models on a loopback port, as a started frontend would."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _deploy(kube, namespace: str, operator, api_version: str) -> str:
    operator.launch = FakeFrontend
    prof = make_profile(version=DYNAMO_RENDERING[api_version], namespace=namespace)
    dgd = render_dgd(prof, parse_topology("1P1-1D1"), study="act", trial_id="1")
    apply(kube, dgd)
    wait_ready(kube, namespace, dgd["metadata"]["name"], version=api_version, timeout_s=60)
    return str(dgd["metadata"]["name"])


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_concurrent_edit_is_kept_and_the_switch_retries(kube, namespace, operator, api_version) -> None:
    name = _deploy(kube, namespace, operator, api_version)
    act = K8sActuator(kube, name, namespace, api_version=api_version, frontend_access="load-balancer")
    reads: list[str] = []
    real_read = act.read

    def read_then_someone_else_writes() -> dict[str, Any]:
        obj = real_read()
        reads.append(obj["metadata"]["resourceVersion"])
        if len(reads) == 1:  # another writer edits the graph between our read and our patch
            kube.custom.patch_namespaced_custom_object(
                GROUP, api_version, namespace, PLURAL, name, {"metadata": {"labels": {"team": "other"}}}
            )
        return obj

    act.read = read_then_someone_else_writes  # type: ignore[method-assign]
    try:
        res = act.apply(PRESET)
    finally:
        act.close()
    assert len(reads) == 2 and reads[0] != reads[1]  # 409 on the stale resourceVersion, re-read, retried
    obj = real_read()
    assert obj["metadata"]["labels"]["team"] == "other"  # the other writer's change survives
    assert act.current() == PRESET and obj["metadata"]["generation"] == 2
    assert res.duration_s > 0 and res.requests_affected is None and "generation 2" in res.detail
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "autotune-controller" in managers  # who changed the frontend args is on record


def test_missing_graph_is_named(kube, namespace, api_version) -> None:
    act = K8sActuator(kube, "no-such-graph", namespace, api_version=api_version)
    with pytest.raises(BackendError, match=f"no-such-graph not found in namespace {namespace}"):
        act.current()


def test_graph_not_ready_after_the_patch_says_what_changed(kube, namespace, operator, api_version) -> None:
    name = _deploy(kube, namespace, operator, api_version)
    operator.behavior = lambda obj: "never"  # the new generation never becomes Ready
    act = K8sActuator(kube, name, namespace, api_version=api_version, ready_timeout_s=3)
    with pytest.raises(BackendError, match="carries the new frontend args, generation 2"):
        act.apply(PRESET)
    assert act.current() == PRESET  # the roll-back is the controller's: it applies the previous preset


def test_make_k8s_actuator_from_a_kubeconfig(kube, local_cluster, namespace, operator, api_version) -> None:
    name = _deploy(kube, namespace, operator, api_version)
    act = make_k8s_actuator(name, namespace, KubeOptions(kubeconfig=str(local_cluster.kubeconfig)))
    try:
        assert act.api_version == api_version  # found by discovery
        assert act.current() == RouterSettings()
        assert act.frontend_url().startswith("http://127.0.0.1:")  # the test operator's LoadBalancer address
    finally:
        act.close()
        act.kube.close()
    with pytest.raises(BackendError, match="not found"):
        make_k8s_actuator("other", namespace, KubeOptions(kubeconfig=str(local_cluster.kubeconfig)))


@pytest.mark.parametrize(("api_version", "example"), [(V1ALPHA1, "vllm-disagg_router"), (V1BETA1, "vllm-agg_router")])
def test_a_graph_configured_the_dynamo_example_way_is_refused_in_one_line(
    kube, namespace, shared, api_version, example
) -> None:
    """Dynamo's examples leave the frontend's command to the operator and set DYN_ROUTER_MODE in env:
    there are no args to switch, and the controller says so instead of guessing a command line."""
    obj = yaml.safe_load((shared / EXAMPLES_DIRS[api_version] / f"{example}.yaml").read_text())
    obj["metadata"]["namespace"] = namespace
    apply(kube, obj)
    act = K8sActuator(kube, obj["metadata"]["name"], namespace, api_version=api_version)
    for attempt in (act.current, lambda: act.apply(PRESET)):
        with pytest.raises(InputError, match="carries the router flags in args, as `autotune dgd` renders them"):
            attempt()
    stored = kube.custom.get_namespaced_custom_object(GROUP, api_version, namespace, PLURAL, obj["metadata"]["name"])
    assert stored["metadata"]["generation"] == 1  # nothing patched
