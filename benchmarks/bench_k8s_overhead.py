"""Benchmark: autotune's own overhead per k8s trial against a real local kube-apiserver 1.20.2.

One trial = ``K8sBackend.deploy`` (render, server-side apply, watch to Ready, read the frontend
Service, probe ``/v1/models``) + ``close`` (delete, watch until gone, pods gone). The time the
operator spends (apply → it writes Ready; delete → it drops its finalizer) is subtracted, and no
burst runs, so what remains is autotune's overhead. Target (issue 5): at most 1 s per trial.

The test operator (tests/k8s) plays Dynamo's operator; its "frontend" here is a stdlib HTTP
server answering /v1/models and /health on loopback, because the burst is not being measured.

    python benchmarks/bench_k8s_overhead.py [--trials 20] [--topology 1P1-4D1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

from k8s_cluster import LocalCluster, apiserver_binary, dgd_crd, install_crd  # noqa: E402
from k8s_operator import TestOperator  # noqa: E402
from k8s_profiles import make_profile  # noqa: E402

from autotune.backends.k8s import K8sBackend  # noqa: E402
from autotune.k8s.client import KubeOptions, connect  # noqa: E402
from autotune.k8s.render import api_version_for  # noqa: E402
from autotune.topology import parse_topology  # noqa: E402
from tests.conftest import shared_path  # noqa: E402


class StandInFrontend:
    """Answers the two readiness probes autotune makes; nothing else."""

    def __init__(self, model: str, workers: int) -> None:
        body_models = json.dumps({"object": "list", "data": [{"id": model, "object": "model"}]}).encode()
        body_health = json.dumps(
            {"status": "healthy", "instances": [{"endpoint": "generate"} for _ in range(workers)]}
        ).encode()

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = body_models if self.path == "/v1/models" else body_health
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--topology", default="1P1-4D1")
    a = ap.parse_args()
    binary = apiserver_binary()
    if binary is None:
        print("kube-apiserver not built: run scripts/setup_kube.sh", file=sys.stderr)
        return 2
    shared = shared_path()
    if not (shared / "dynamo").is_dir():
        print(
            f"{shared / 'dynamo'} not found: the DGD CRD comes from ../shared (or $AUTOTUNE_SHARED_DIR)",
            file=sys.stderr,
        )
        return 2
    topo = parse_topology(a.topology)
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="bench-k8s-")), binary).start()
    try:
        kube = connect(KubeOptions(kubeconfig=str(cluster.kubeconfig)))
        prof = make_profile("vllm", namespace="bench")
        version = api_version_for(prof)
        install_crd(kube.api, dgd_crd(shared, version))
        kube.core.create_namespace({"metadata": {"name": "bench"}})
        model = prof.model.served_name or prof.model.name
        op = TestOperator(
            kube.api,
            "bench",
            version=version,
            launch=lambda obj: StandInFrontend(model, topo.prefill_workers + topo.decode_workers + topo.agg_workers),
        ).start()
        backend = K8sBackend(kube=kube, study="bench", ready_timeout_s=60, delete_timeout_s=60)
        rows = []
        cpu0, wall0 = os.times(), time.perf_counter()
        for i in range(a.trials + 1):  # trial 0 warms connections and caches; not counted
            t0 = time.monotonic()
            dep = backend.deploy(prof, topo, trial_id=f"b{i}")
            t_deployed = time.monotonic()
            applied = t0 + dep.timings["apply_s"]
            c0 = time.monotonic()
            dep.close()
            c1 = time.monotonic()
            op_ready = op.stamps[("ready", dep.name)] - applied  # operator reacting to the new graph
            # from our delete request's answer until the operator drops its finalizer: the operator's part
            op_delete = max(0.0, op.stamps[("finalize", dep.name)] - (c0 + dep.timings["delete_s"]))
            total = (t_deployed - t0) + (c1 - c0)
            if i:
                rows.append(
                    {
                        "total": total,
                        "operator": op_ready + op_delete,
                        "overhead": total - op_ready - op_delete,
                        "apply": dep.timings["apply_s"],
                        "ready_seen": dep.timings["ready_s"] - op_ready,
                        "frontend": dep.timings["frontend_s"],
                        "delete": (c1 - c0) - op_delete,
                    }
                )
        cpu1, wall1 = os.times(), time.perf_counter()
        op.stop()
        kube.close()
    finally:
        cluster.stop()
    n = len(rows)
    print(
        f"k8s trial overhead, {n} trials of {topo.shape()} against kube-apiserver 1.20.2 on loopback "
        f"(operator time and bursts excluded)"
    )
    print(f"{'phase':<28}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}")
    labels = {
        "apply": "server-side apply",
        "ready_seen": "Ready seen after operator",
        "frontend": "Service + /v1/models probe",
        "delete": "delete + wait gone (excl. op)",
        "overhead": "autotune overhead",
        "operator": "(operator, excluded)",
        "total": "(wall per trial)",
    }
    for key, label in labels.items():
        xs = [r[key] * 1e3 for r in rows]
        print(f"{label:<28}{statistics.median(xs):>11.1f}{pct(xs, 0.9):>9.1f}{max(xs):>9.1f}")
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(
        f"process CPU (autotune + test operator threads): {cpu / (n + 1) * 1e3:.0f} ms per trial; "
        f"wall {(wall1 - wall0) / (n + 1):.2f} s per trial"
    )
    worst = max(r["overhead"] for r in rows)
    print(f"target <= 1000 ms per trial: {'met' if worst <= 1.0 else 'MISSED'} (worst {worst * 1e3:.0f} ms)")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
