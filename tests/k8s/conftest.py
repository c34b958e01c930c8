"""Fixtures for the k8s tests: one real apiserver per session, one namespace and operator per test.

Without the kube-apiserver binary the tests skip (say why) on a developer machine, and fail in CI
(``CI=true``), where scripts/setup_kube.sh must have built it. The cluster installs the real DGD CRD from
the third-party reference data, so it also needs ``../shared`` (``shared`` fixture: skip, or fail in CI).
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k8s_cluster import LocalCluster, apiserver_binary, dgd_crd, install_crd  # noqa: E402
from k8s_operator import TestOperator  # noqa: E402

from autotune.k8s.client import Kube, KubeOptions, connect  # noqa: E402

_ns_counter = itertools.count()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run scripts/setup_kube.sh first", pytrace=False)
    pytest.skip(f"{reason} (run scripts/setup_kube.sh)")


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Iterator[LocalCluster]:
    binary = apiserver_binary()
    if binary is None:
        _unavailable("kube-apiserver binary not found (.cache/kube/kube-apiserver or $KUBE_APISERVER)")
    for tool in ("etcd", "openssl"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not on PATH")
    crd = dgd_crd(shared)
    cluster = LocalCluster(tmp_path_factory.mktemp("kube"), binary)
    cluster.start()
    try:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        install_crd(api, crd)
        api.close()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube(local_cluster: LocalCluster) -> Iterator[Kube]:
    k = connect(KubeOptions(kubeconfig=str(local_cluster.kubeconfig)))
    yield k
    k.close()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"t{next(_ns_counter)}-{os.getpid() % 10000}"
    kube.core.create_namespace({"metadata": {"name": name}})
    yield name
    # no namespace controller runs here, so a deleted namespace would stay Terminating; leave it


@pytest.fixture
def operator(kube: Kube, namespace: str) -> Iterator[TestOperator]:
    op = TestOperator(kube.api, namespace).start()
    yield op
    op.stop()
