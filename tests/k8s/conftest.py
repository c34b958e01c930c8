"""Fixtures for the k8s tests: one real apiserver per DGD apiVersion per session, one namespace and operator per test.

Without the kube-apiserver binary the tests skip (say why) on a developer machine, and fail in CI
(``CI=true``), where scripts/setup_kube.sh must have built it. Each cluster installs the real DGD CRD of one
apiVersion from the third-party reference data, so it also needs ``../shared`` (``shared`` fixture: skip, or
fail in CI). A test gets the ``api_version`` fixture's cluster (v1beta1 unless it parametrizes it).
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

from autotune.k8s import V1BETA1  # noqa: E402
from autotune.k8s.client import Kube, KubeOptions, connect  # noqa: E402

_ns_counter = itertools.count()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run scripts/setup_kube.sh first", pytrace=False)
    pytest.skip(f"{reason} (run scripts/setup_kube.sh)")


class Clusters:
    """One apiserver per DGD apiVersion, started on first use and kept for the session."""

    def __init__(self, root: Path, binary: str, shared: Path) -> None:
        self.root, self.binary, self.shared = root, binary, shared
        self.started: dict[str, tuple[LocalCluster, Kube]] = {}

    def get(self, version: str) -> tuple[LocalCluster, Kube]:
        if version not in self.started:
            crd = dgd_crd(self.shared, version)
            cluster = LocalCluster(self.root / version, self.binary)
            (self.root / version).mkdir()
            cluster.start()
            try:
                kube = connect(KubeOptions(kubeconfig=str(cluster.kubeconfig)))
                install_crd(kube.api, crd)
            except BaseException:
                cluster.stop()
                raise
            self.started[version] = (cluster, kube)
        return self.started[version]

    def stop(self) -> None:
        for cluster, kube in self.started.values():
            kube.close()
            cluster.stop()


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Iterator[Clusters]:
    binary = apiserver_binary()
    if binary is None:
        _unavailable("kube-apiserver binary not found (.cache/kube/kube-apiserver or $KUBE_APISERVER)")
    for tool in ("etcd", "openssl"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not on PATH")
    pool = Clusters(tmp_path_factory.mktemp("kube"), binary, shared)
    yield pool
    pool.stop()


@pytest.fixture
def api_version() -> str:
    """The DGD apiVersion the test cluster serves: what the default test profile (Dynamo 1.6.1) renders.

    Tests run on both with ``@pytest.mark.parametrize("api_version", API_VERSIONS)``.
    """
    return V1BETA1


@pytest.fixture
def local_cluster(clusters: Clusters, api_version: str) -> LocalCluster:
    return clusters.get(api_version)[0]


@pytest.fixture
def kube(clusters: Clusters, api_version: str) -> Kube:
    return clusters.get(api_version)[1]


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"t{next(_ns_counter)}-{os.getpid() % 10000}"
    kube.core.create_namespace({"metadata": {"name": name}})
    yield name
    # no namespace controller runs here, so a deleted namespace would stay Terminating; leave it


@pytest.fixture
def operator(kube: Kube, namespace: str, api_version: str) -> Iterator[TestOperator]:
    op = TestOperator(kube.api, namespace, version=api_version).start()
    yield op
    op.stop()
