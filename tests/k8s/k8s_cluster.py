"""A real etcd + kube-apiserver 1.20.2 on loopback for the k8s tests and the overhead benchmark.

The apiserver is built by scripts/setup_kube.sh (scripts/build-kube-apiserver.sh). Own PKI, token auth,
RBAC, free ports, and processes stopped by PID. The DGD CRD is the real one from the third-party reference
data (``../shared``, found by tests/conftest.py ``shared_dir()``): ``dynamo/crd`` serves ``v1alpha1``,
``dynamo/crd-v1beta1`` serves ``v1beta1``; one cluster per version, since one CRD name cannot carry two
storage shapes without the operator's conversion webhook. Both get the test-only rewrite 1.20 needs (it
misreads ``default: ""`` as null; it cannot run CEL, so the v1beta1 rules are dropped and checked by
``crd_v1beta1.cel_violations`` instead).
"""

from __future__ import annotations

import base64
import copy
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autotune.k8s import V1ALPHA1, V1BETA1

REPO = Path(__file__).resolve().parents[2]
# inside the reference data, per DGD apiVersion
CRD_FILES = {
    V1ALPHA1: Path("dynamo", "crd", "nvidia.com_dynamographdeployments.yaml"),
    V1BETA1: Path("dynamo", "crd-v1beta1", "nvidia.com_dynamographdeployments.v1beta1.yaml"),
}
EXAMPLES_DIRS = {V1ALPHA1: Path("dynamo", "examples"), V1BETA1: Path("dynamo", "crd-v1beta1", "examples")}
TOKEN = "t0k"


def apiserver_binary() -> str | None:
    for cand in (os.environ.get("KUBE_APISERVER", ""), str(REPO / ".cache" / "kube" / "kube-apiserver")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_pki(d: Path) -> None:
    def sh(*a: str) -> None:
        subprocess.run(a, cwd=d, check=True, capture_output=True)

    sh(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "365",
        "-subj",
        "/CN=test-ca",
    )
    sh(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
    )
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    sh(
        "openssl",
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "365",
        "-extfile",
        "ext.cnf",
        "-out",
        "apiserver.crt",
    )
    sh("openssl", "genrsa", "-out", "sa.key", "2048")
    sh("openssl", "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def kubeconfig_text(server: str, ca_file: Path | None, token: str = TOKEN, namespace: str = "default") -> str:
    cluster = f'server: "{server}"'
    if ca_file is not None:
        cluster += f", certificate-authority-data: {base64.b64encode(ca_file.read_bytes()).decode()}"
    return f"""apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{{cluster}}}}}]
users: [{{name: t, user: {{token: {token}}}}}]
contexts: [{{name: t, context: {{cluster: t, user: t, namespace: {namespace}}}}}]
current-context: t
"""


def _stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is not None:
        return
    os.kill(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


@dataclass
class LocalCluster:
    """etcd + kube-apiserver processes, their directory and an admin kubeconfig."""

    dir: Path
    binary: str
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def start(self) -> LocalCluster:
        d = self.dir
        _make_pki(d)
        (d / "tokens.csv").write_text(f"{TOKEN},admin,admin-uid,system:masters\n")
        ec, ep, em, self.port = free_port(), free_port(), free_port(), free_port()
        try:
            self.procs.append(
                subprocess.Popen(
                    [
                        "etcd",
                        "--name",
                        "t",
                        "--data-dir",
                        f"{d}/etcd",
                        "--listen-client-urls",
                        f"http://127.0.0.1:{ec}",
                        "--advertise-client-urls",
                        f"http://127.0.0.1:{ec}",
                        "--listen-peer-urls",
                        f"http://127.0.0.1:{ep}",
                        "--initial-advertise-peer-urls",
                        f"http://127.0.0.1:{ep}",
                        "--initial-cluster",
                        f"t=http://127.0.0.1:{ep}",
                        "--listen-metrics-urls",
                        f"http://127.0.0.1:{em}",
                    ],
                    stdout=open(d / "etcd.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            self.procs.append(
                subprocess.Popen(
                    [
                        self.binary,
                        f"--etcd-servers=http://127.0.0.1:{ec}",
                        f"--secure-port={self.port}",
                        "--bind-address=127.0.0.1",
                        "--advertise-address=127.0.0.1",
                        "--insecure-port=0",
                        f"--tls-cert-file={d}/apiserver.crt",
                        f"--tls-private-key-file={d}/apiserver.key",
                        f"--client-ca-file={d}/ca.crt",
                        f"--token-auth-file={d}/tokens.csv",
                        "--authorization-mode=RBAC",
                        "--service-account-issuer=https://kubernetes.default.svc",
                        "--api-audiences=https://kubernetes.default.svc",
                        f"--service-account-key-file={d}/sa.pub",
                        f"--service-account-signing-key-file={d}/sa.key",
                        "--service-cluster-ip-range=10.0.0.0/24",
                        "--endpoint-reconciler-type=none",
                        "--disable-admission-plugins=ServiceAccount",
                        f"--cert-dir={d}/certs",
                    ],
                    stdout=open(d / "apiserver.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.kubeconfig.write_text(kubeconfig_text(self.server, self.ca))
        return self

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        deadline = time.monotonic() + 90  # etcd is awaited implicitly by /readyz
        while True:
            try:
                if urllib.request.urlopen(req, context=ctx, timeout=2).status == 200:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"kube-apiserver not ready; logs in {self.dir}")
            time.sleep(0.1)

    def stop(self) -> None:
        for p in reversed(self.procs):  # apiserver first, then etcd
            _stop(p)
        self.procs.clear()
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)  # 120 MB of preallocated WAL


def crd_for_k120(crd: dict[str, Any]) -> dict[str, Any]:
    """Test-only rewrite: drop ``default: ""`` (1.20 reads it as null); list-map keys become required;
    drop CEL ``x-kubernetes-validations`` (alpha in 1.23, GA in 1.29)."""

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            x.pop("x-kubernetes-validations", None)
            keys = x.get("x-kubernetes-list-map-keys") if x.get("type") == "array" else None
            if keys and isinstance(x.get("items"), dict):
                it = x["items"]
                for k in keys:
                    p = it.get("properties", {}).get(k)
                    if p is not None and p.get("default") == "":
                        del p["default"]
                        req = it.setdefault("required", [])
                        if k not in req:
                            req.append(k)
            if x.get("type") == "string" and x.get("default") == "":
                del x["default"]
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(crd)
    return crd


@functools.cache
def _read_crd(path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return crd


def load_crd(shared: Path, version: str) -> dict[str, Any]:
    """The real DGD CRD serving ``version``, unmodified (a fresh copy), from the reference data directory."""
    return copy.deepcopy(_read_crd(shared / CRD_FILES[version]))


def dgd_crd(shared: Path, version: str) -> dict[str, Any]:
    """The real DGD CRD serving ``version``, rewritten for 1.20."""
    return crd_for_k120(load_crd(shared, version))


def install_crd(api: Any, crd: dict[str, Any], timeout_s: float = 60) -> None:
    """Create the CRD, wait for Established and for a successful list (kube-test-cluster.md pitfalls)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    name = crd["metadata"]["name"]
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = crd["spec"]["versions"][0]["name"]
    co = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout_s
    while True:
        got = ext.read_custom_resource_definition(name)
        established = any(c.type == "Established" and c.status == "True" for c in (got.status.conditions or []))
        if established:
            try:
                co.list_namespaced_custom_object(group, version, "default", plural)
                return
            except ApiException:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRD {name} not usable after {timeout_s} s")
        time.sleep(0.05)
