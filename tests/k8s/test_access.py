"""How the frontend is reached: Service DNS in-cluster, LoadBalancer address, kubectl port-forward."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from autotune.errors import BackendError, InputError
from autotune.k8s.access import count_generate_endpoints, open_frontend
from autotune.k8s.names import frontend_service_name

pytestmark = pytest.mark.slow


def _service(kube, ns: str, dgd: str, *, lb_ip: str | None) -> None:
    name = frontend_service_name(dgd)
    kube.core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "type": "LoadBalancer" if lb_ip else "ClusterIP",
                "selector": {"app": dgd},
                "ports": [{"name": "http", "port": 8123, "targetPort": 8000}],
            },
        },
    )
    if lb_ip:
        kube.core.patch_namespaced_service_status(name, ns, {"status": {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}})


def test_modes(kube, namespace) -> None:
    _service(kube, namespace, "g1", lb_ip="127.0.0.1")
    _service(kube, namespace, "g2", lb_ip=None)
    lb = open_frontend(kube, namespace, "g1")
    assert (lb.mode, lb.url) == ("load-balancer", "http://127.0.0.1:8123")
    inside = open_frontend(dataclasses.replace(kube, in_cluster=True), namespace, "g1", port=8000)
    assert (inside.mode, inside.url) == ("service-dns", f"http://g1-frontend.{namespace}.svc.cluster.local:8000")
    with pytest.raises(BackendError, match="no load-balancer address"):
        open_frontend(kube, namespace, "g2", mode="load-balancer")
    with pytest.raises(InputError, match="--frontend-access"):
        open_frontend(kube, namespace, "g2", mode="tunnel")
    with pytest.raises(BackendError, match="Service g3-frontend.*404"):
        open_frontend(kube, namespace, "g3", mode="load-balancer")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")
def test_port_forward_failure_is_reported(kube, namespace) -> None:
    """No pod behind the Service (no kubelet here): kubectl fails and its words reach the trial."""
    _service(kube, namespace, "g4", lb_ip=None)
    with pytest.raises(BackendError, match="port-forward to g4-frontend failed: error: timed out waiting"):
        open_frontend(kube, namespace, "g4", timeout_s=3)


def test_health_body_parsing() -> None:
    assert (
        count_generate_endpoints(
            '{"instances":[{"endpoint":"generate"},{"endpoint":"clear_kv_blocks"},{"endpoint":"generate"}]}'
        )
        == 2
    )
    assert count_generate_endpoints('{"status":"healthy"}') is None
    assert count_generate_endpoints("OK") is None
