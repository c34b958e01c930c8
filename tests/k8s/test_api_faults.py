"""Retries against an apiserver that answers 409/429/5xx for a while, and no retries on 401/403/422.

A loopback proxy in front of the real apiserver injects the errors, so the client, the watch and
the retry policy are exercised on real HTTP traffic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from k8s_cluster import kubeconfig_text
from k8s_faultproxy import FaultProxy
from k8s_profiles import make_profile

from autotune.errors import BackendError
from autotune.k8s import V1BETA1
from autotune.k8s.client import Backoff, Kube, KubeOptions, call, connect
from autotune.k8s.lifecycle import apply, delete_and_wait, wait_ready
from autotune.k8s.render import render_dgd
from autotune.topology import parse_topology

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy(local_cluster) -> Iterator[FaultProxy]:
    p = FaultProxy(local_cluster.port, local_cluster.ca).start()
    yield p
    p.stop()


@pytest.fixture
def flaky(proxy, tmp_path) -> Iterator[Kube]:
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text(f"http://127.0.0.1:{proxy.port}", None))
    k = connect(KubeOptions(kubeconfig=str(path)))
    yield k
    k.close()


def _dgd(ns: str, trial: str) -> dict:
    """A graph of the default test cluster's apiVersion (V1BETA1, the ``api_version`` fixture's default)."""
    return render_dgd(make_profile("vllm", namespace=ns), parse_topology("1P1-1D1"), study="faults", trial_id=trial)


def _patches(proxy: FaultProxy) -> list[int]:
    return [status for method, path, status in proxy.log if method == "PATCH" and "dynamographdeployments" in path]


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, 1), (409, None)])
def test_apply_retries_transient_errors_and_conflicts(flaky, proxy, namespace, status: int, retry_after) -> None:
    proxy.inject(status, 3, methods={"PATCH"}, retry_after=retry_after)
    stored = apply(flaky, _dgd(namespace, f"r{status}"))
    assert stored["metadata"]["generation"] == 1
    assert _patches(proxy) == [status] * 3 + [201]


@pytest.mark.parametrize("status", [401, 403, 422])
def test_apply_never_retries_auth_or_invalid(flaky, proxy, namespace, status: int) -> None:
    proxy.inject(status, 5, methods={"PATCH"})
    with pytest.raises(BackendError, match=f"HTTP {status}: injected {status}"):
        apply(flaky, _dgd(namespace, f"n{status}"))
    assert _patches(proxy) == [status]


def test_whole_trial_survives_an_api_brownout(flaky, kube, proxy, namespace, operator) -> None:
    """Every DGD request (apply, list, watch, delete) fails for a while; the trial still completes."""
    dgd = _dgd(namespace, "brownout")
    name = dgd["metadata"]["name"]
    proxy.inject(500, 2, methods={"PATCH"})
    apply(flaky, dgd)
    proxy.inject(500, 3, methods={"GET"})  # the list and the watches behind wait_ready
    proxy.inject(429, 2, methods={"GET"}, retry_after=0)
    wait_ready(flaky, namespace, name, version=V1BETA1, timeout_s=30, slice_s=1)
    proxy.inject(503, 2, methods={"DELETE"})
    proxy.inject(500, 2, methods={"GET"})
    delete_and_wait(flaky, namespace, name, version=V1BETA1, timeout_s=30)
    assert all(f.hit == f.count for f in proxy.faults)
    assert (
        kube.custom.list_namespaced_custom_object("nvidia.com", V1BETA1, namespace, "dynamographdeployments")["items"]
        == []
    )


def test_retries_give_up_after_budget(flaky, proxy, namespace) -> None:
    proxy.inject(500, 1000, methods={"PATCH"})
    dgd = _dgd(namespace, "budget")
    with pytest.raises(BackendError, match="HTTP 500.*gave up after 1.[0-9] s"):
        call(
            lambda: flaky.custom.patch_namespaced_custom_object(
                "nvidia.com",
                V1BETA1,
                namespace,
                "dynamographdeployments",
                dgd["metadata"]["name"],
                dgd,
                field_manager="autotune",
                force=True,
                _content_type="application/apply-patch+yaml",
            ),
            what="apply",
            backoff=Backoff(budget_s=1.0),
        )
    assert 3 <= len(_patches(proxy)) <= 12


def test_lost_watches_are_reestablished(flaky, proxy, namespace, operator) -> None:
    """Every watch stream is cut after 0.4 s without an event; readiness is still seen."""
    operator.ready_delay_s = 2.5
    dgd = _dgd(namespace, "cut")
    apply(flaky, dgd)
    proxy.cut_watches_after_s = 0.4
    obj = wait_ready(flaky, namespace, dgd["metadata"]["name"], version=V1BETA1, timeout_s=30, slice_s=20)
    assert obj["status"]["state"] == "successful"
    watches = [p for m, p, _ in proxy.log if m == "GET" and "watch=true" in p]
    assert len(watches) >= 3  # one 20 s slice would have been a single watch without the cuts
    proxy.cut_watches_after_s = None
    delete_and_wait(flaky, namespace, dgd["metadata"]["name"], version=V1BETA1, timeout_s=30)


def test_undeletable_graph_is_reported_with_the_cleanup_command(flaky, kube, proxy, namespace, operator) -> None:
    from k8s_profiles import make_profile as profile

    from autotune.backends.k8s import K8sBackend
    from autotune.k8s.housekeeping import cleanup

    operator.behavior = lambda obj: "never"
    proxy.inject(403, 1, methods={"DELETE"})
    backend = K8sBackend(kube=flaky, study="stuck", ready_timeout_s=1.5)
    with pytest.raises(
        BackendError,
        match=r"not ready after 1.5 s.*teardown also failed: .*HTTP 403.*"
        r"autotune cleanup -N .* --study stuck",
    ):
        backend.deploy(profile("vllm", namespace=namespace), parse_topology("1A1"), trial_id="1")
    assert [lo.trial_id for lo in cleanup(kube, namespace, "stuck", version=V1BETA1, timeout_s=20)] == ["1"]
