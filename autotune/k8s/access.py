"""Reaching a trial's frontend, and knowing how we reached it.

Inside the cluster the Service DNS name is the honest path; outside, a LoadBalancer address if
the Service has one, else ``kubectl port-forward``. Latency through a port-forward is not the
same measurement (kubernetes.md §4), so the mode is recorded with every trial.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import httpx

from autotune.errors import BackendError, InputError
from autotune.k8s.client import Kube, call
from autotune.k8s.names import frontend_service_name

Mode = Literal["auto", "service-dns", "load-balancer", "port-forward"]
MODES: tuple[str, ...] = ("auto", "service-dns", "load-balancer", "port-forward")
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@dataclass
class FrontendAccess:
    """Base URL of a frontend plus the process behind it, if any (stopped by PID in ``close``)."""

    url: str
    mode: str
    service: str
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _service_port(svc: object, default: int) -> int:
    ports = getattr(getattr(svc, "spec", None), "ports", None) or []
    named = [p for p in ports if (p.name or "") in ("http", "frontend")]
    return int((named or ports)[0].port) if ports else default


def _lb_address(svc: object) -> str | None:
    ingress = getattr(getattr(getattr(svc, "status", None), "load_balancer", None), "ingress", None) or []
    for ing in ingress:
        if ing.ip or ing.hostname:
            return ing.ip or ing.hostname
    return None


def open_frontend(
    kube: Kube,
    ns: str,
    dgd: str,
    *,
    port: int = 8000,
    mode: str = "auto",
    kubectl: str = "kubectl",
    timeout_s: float = 30.0,
) -> FrontendAccess:
    """Open the way to ``{dgd}-frontend``; ``auto`` picks service-dns in-cluster, else LB, else port-forward."""
    if mode not in MODES:
        raise InputError(f"--frontend-access: unknown mode {mode!r} (choose from {', '.join(MODES)})")
    name = frontend_service_name(dgd)
    if mode == "auto" and kube.in_cluster:
        mode = "service-dns"
    if mode == "service-dns":
        return FrontendAccess(f"http://{name}.{ns}.svc.cluster.local:{port}", "service-dns", name)
    svc = call(lambda: kube.core.read_namespaced_service(name, ns), what=f"read Service {name}")
    addr = _lb_address(svc)
    if mode == "load-balancer" or (mode == "auto" and addr):
        if not addr:
            raise BackendError(f"kubernetes: Service {name} has no load-balancer address")
        host = f"[{addr}]" if ":" in addr else addr
        return FrontendAccess(f"http://{host}:{_service_port(svc, port)}", "load-balancer", name)
    return _port_forward(kube, ns, name, _service_port(svc, port), kubectl, timeout_s)


def _port_forward(kube: Kube, ns: str, svc: str, port: int, kubectl: str, timeout_s: float) -> FrontendAccess:
    exe = shutil.which(kubectl)
    if exe is None:
        raise BackendError(f"kubernetes: port-forward needs {kubectl!r} on PATH (or run autotune inside the cluster)")
    cmd = [
        exe,
        "port-forward",
        f"svc/{svc}",
        f":{port}",
        "-n",
        ns,
        "--address",
        "127.0.0.1",
        f"--pod-running-timeout={max(1, int(timeout_s))}s",
    ]  # kubectl then says why itself
    if kube.source != "in-cluster":
        cmd += ["--kubeconfig", kube.source]
    if kube.context:
        cmd += ["--context", kube.context]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    found: list[int] = []
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keeps draining so kubectl never blocks on a full pipe
            if len(lines) < 20:
                lines.append(line.strip())
            m = _FORWARDING.search(line)
            if m and not found:
                found.append(int(m.group(1)))

    threading.Thread(target=read, daemon=True, name=f"port-forward-{svc}").start()
    access = FrontendAccess("", "port-forward", svc, proc)
    deadline = time.monotonic() + timeout_s + 10
    while not found:
        if proc.poll() is not None or time.monotonic() > deadline:
            access.close()
            time.sleep(0.1)  # let the reader thread take kubectl's last words
            why = " | ".join(lines) or f"no answer within {timeout_s + 10:g} s"
            raise BackendError(f"kubernetes: port-forward to {svc} failed: {why}")
        time.sleep(0.05)
    access.url = f"http://127.0.0.1:{found[0]}"
    return access


def probe_frontend(url: str, model: str, workers: int, *, timeout_s: float = 3.0, exact: bool = False) -> str | None:
    """None when ``/v1/models`` lists ``model`` and ``/health`` shows ``workers`` generate endpoints
    (``exact``: no more either, as after a scale-down); otherwise what is missing.
    /health alone is not enough: early requests 404 (dynamo.md §6)."""
    try:
        # frontends are plain HTTP; verify=False skips loading the CA bundle (~0.1 s per client)
        with httpx.Client(timeout=timeout_s, trust_env=False, verify=False) as http:
            r = http.get(f"{url}/v1/models")
            if r.status_code != 200:
                return f"/v1/models answered {r.status_code}"
            ids = [m.get("id") for m in r.json().get("data", [])]
            if model not in ids:
                return f"/v1/models lists {ids}, not {model!r}"
            h = http.get(f"{url}/health")
            if h.status_code != 200:
                return f"/health answered {h.status_code}"
            n = count_generate_endpoints(h.text)
            if n is not None and (n < workers or (exact and n > workers)):
                return f"{n}/{workers} workers registered with the frontend"
            return None
    except (httpx.HTTPError, ValueError) as exc:
        return f"frontend not answering ({type(exc).__name__})"


def count_generate_endpoints(health_body: str) -> int | None:
    """Worker instances in a Dynamo /health body, or None if the body has no instance list."""
    try:
        body = json.loads(health_body)
    except ValueError:
        return None
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list):
        return None
    return sum(1 for i in instances if isinstance(i, dict) and i.get("endpoint") == "generate")
