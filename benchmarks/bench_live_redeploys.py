"""Benchmark: wall time of a live study when every trial redeploys, vs keeping and patching the graph.

A real local kube-apiserver 1.20 and the test operator (tests/k8s) stand in for the cluster and
Dynamo's operator; the operator rolls out each generation like Dynamo's (only what changed
restarts) and takes ``--worker-s`` per worker start and ``--frontend-s`` per frontend (re)start. No
Dynamo process runs: each load point waits ``--point-s`` (a live burst's wall time) and the simulator
gives its figures, so the sampler proposes what it would on a real study. Every delay is multiplied
by ``--scale`` so the benchmark runs in minutes; the figures are printed scaled, with the scale.

Variants (each a fresh study of ``--trials`` trials, same seed):

* ``naive``: every trial deploys its graph and deletes it (``--no-reuse-graphs --router-block 1``);
* ``reuse``: the graph is kept between trials and patched when only router or replicas change;
* ``grouped``: reuse, plus router grouping (``--router-block K``, default 3);
* with ``--workers N``: N worker processes (``autotune worker``'s study loop, no final report) share
  the study through a throw-away PostgreSQL (tests/pg_cluster.py), each with reuse and grouping.
  Without GPU leases the operator does not bound the GPUs the N graphs hold together.

    python benchmarks/bench_live_redeploys.py [--trials 30] [--scale 0.1] [--workers 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
sys.path.insert(0, str(ROOT / "tests"))

from k8s_cluster import LocalCluster, apiserver_binary, dgd_crd, install_crd  # noqa: E402
from k8s_hybrid import SimMeasured  # noqa: E402
from k8s_operator import TestOperator  # noqa: E402

from autotune import backends  # noqa: E402
from autotune.k8s.client import KubeOptions, connect  # noqa: E402
from autotune.k8s.render import api_version_for  # noqa: E402
from autotune.profile import Profile, profile_from_dict  # noqa: E402
from autotune.search import trials as trial_attrs  # noqa: E402
from autotune.search.config import StudyConfig  # noqa: E402
from autotune.search.study import run_study  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

WORKER_S, FRONTEND_S, POINT_S = 60.0, 5.0, 30.0  # realistic: a model-loading worker pod, a frontend, a burst


def bench_profile(namespace: str) -> Profile:
    """One 8-GPU node, TP 1 or 2, up to 3 workers per pool: shapes repeat as in a real search."""
    return profile_from_dict(
        {
            "name": "bench-redeploys",
            "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
            "model": "Llama-3.1-8B",
            "dynamo": {
                "version": "1.6.1",
                "namespace": namespace,
                "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
            },
            "workload": {
                "templates": 2,
                "prefix_tokens": 32,
                "input_tokens": {"dist": "fixed", "value": 64},
                "output_tokens": {"dist": "fixed", "value": 8},
                "concurrency": [4, 8],
                "requests_per_point": 40,
                "warmup_requests": 4,
                "cooldown_requests": 4,
            },
            "search": {
                "prefill_tp": [1, 2],
                "decode_tp": [1, 2],
                "max_prefill_workers": 3,
                "max_decode_workers": 3,
                "allow_aggregated": False,
                "operating_point": "grid",
            },
        }
    )


def study_config(a: argparse.Namespace, out: Path, name: str, reuse: bool, block: int, **kw: Any) -> StudyConfig:
    return StudyConfig(
        out, a.trials, "k8s", (("study", name),), seed=a.seed, reuse_graphs=reuse, router_block=block, **kw
    )


def use_hybrid_backend(kubeconfig: str, point_s: float) -> None:
    """``--backend k8s`` builds the k8s backend measured by the simulator (tests/k8s/k8s_hybrid.py)."""
    backends.BACKENDS["k8s"] = lambda **kw: SimMeasured(
        kubeconfig=kubeconfig, measure_s=point_s, ready_timeout_s=600, delete_timeout_s=120, **kw
    )


def summarize(study: Any, wall_s: float) -> dict[str, Any]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    kinds = collections.Counter(t.user_attrs.get(trial_attrs.REDEPLOY, "?") for t in done)
    deploy = sum(t.user_attrs.get(trial_attrs.DEPLOY_S, 0.0) for t in done)
    best = max((t.values[1] for t in done if t.user_attrs.get("slo_ok")), default=float("nan"))
    return {
        "wall_s": wall_s,
        "complete": len(done),
        "failed": sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL"),
        "redeploys": dict(sorted(kinds.items())),
        "deploy_s": deploy,
        "shapes": len({t.user_attrs["topology"].split("@")[0] for t in done}),
        "best_tok_s_per_gpu": best,
    }


def as_worker(a: argparse.Namespace) -> int:
    """A child: one worker of the shared study (``autotune worker``'s loop), then exit."""
    use_hybrid_backend(a.kubeconfig, a.point_s)
    cfg = study_config(
        a,
        Path(a.out),
        "par",
        True,
        a.router_block,
        storage=a.storage,
        worker=f"w{a.as_worker}",
        worker_index=a.as_worker,
        heartbeat_s=5,
        stale_after_s=600,
        study_name="bench-par",
    )
    run_study(bench_profile(a.namespace), cfg)
    return 0


def run_parallel(a: argparse.Namespace, kubeconfig: str, namespace: str, point_s: float, out: Path) -> dict[str, Any]:
    import optuna
    from pg_cluster import start_cluster

    pg = start_cluster()
    try:
        url = pg.create_db("bench")
        # Optuna's schema first: workers racing to create it on an empty database collide (UniqueViolation)
        optuna.storages.RDBStorage(url).remove_session()
        common = ["--trials", str(a.trials), "--seed", str(a.seed), "--router-block", str(a.router_block)]
        t0 = time.monotonic()
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--as-worker", str(i), "--kubeconfig", kubeconfig, "--storage", url]
                + ["--namespace", namespace, "--point-s", str(point_s), "--out", str(out / f"w{i}"), *common],
                cwd=ROOT,
            )
            for i in range(a.workers)
        ]
        codes = [c.wait() for c in children]
        wall = time.monotonic() - t0
        if any(codes):
            raise SystemExit(f"a worker failed: exit codes {codes}")
        study = optuna.load_study(study_name="bench-par", storage=url)
        return summarize(study, wall)
    finally:
        pg.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--scale", type=float, default=0.1, help="multiplies every delay (worker 60 s -> 6 s at 0.1)")
    ap.add_argument("--worker-s", type=float, default=WORKER_S)
    ap.add_argument("--frontend-s", type=float, default=FRONTEND_S)
    ap.add_argument("--point-s", type=float, default=POINT_S, help="wall time of one live load point")
    ap.add_argument("--router-block", type=int, default=3)
    ap.add_argument("--variants", default="naive,reuse,grouped")
    ap.add_argument("--workers", type=int, default=0, help="also run N workers on PostgreSQL (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    # internal: a child worker of --workers
    ap.add_argument("--as-worker", type=int, default=None, help=argparse.SUPPRESS)
    for internal in ("--kubeconfig", "--storage", "--namespace", "--out"):
        ap.add_argument(internal, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.as_worker is not None:
        return as_worker(a)

    binary = apiserver_binary()
    if binary is None:
        print("kube-apiserver not built: run scripts/setup_kube.sh", file=sys.stderr)
        return 2
    shared = shared_path()
    worker_s, frontend_s, point_s = a.worker_s * a.scale, a.frontend_s * a.scale, a.point_s * a.scale
    print(
        f"scale {a.scale:g}: worker start {worker_s:g} s (real {a.worker_s:g}), frontend (re)start {frontend_s:g} s "
        f"(real {a.frontend_s:g}), load point {point_s:g} s (real {a.point_s:g}); {a.trials} trials, seed {a.seed}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-redeploys-"))
    (tmp / "kube").mkdir()
    cluster = LocalCluster(tmp / "kube", binary).start()
    results: dict[str, dict[str, Any]] = {}
    try:
        kube = connect(KubeOptions(kubeconfig=str(cluster.kubeconfig)))
        version = api_version_for(bench_profile("x"))
        install_crd(kube.api, dgd_crd(shared, version))
        variants = [v for v in a.variants.split(",") if v]
        plan = {"naive": (False, 1), "reuse": (True, 1), "grouped": (True, a.router_block)}
        if a.workers:
            variants.append(f"{a.workers}-workers")
        for v in variants:
            ns = f"b-{v}".replace("_", "-")
            kube.core.create_namespace({"metadata": {"name": ns}})
            profile = bench_profile(ns)
            op = TestOperator(kube.api, ns, version=version, fake_model=profile.model.served_name or profile.model.name)
            op.startup_s = {"frontend": frontend_s, "worker": worker_s}
            op.start()
            try:
                if v.endswith("-workers"):
                    results[v] = run_parallel(a, str(cluster.kubeconfig), ns, point_s, tmp / v)
                else:
                    use_hybrid_backend(str(cluster.kubeconfig), point_s)
                    reuse, block = plan[v]
                    t0 = time.monotonic()
                    study = run_study(profile, study_config(a, tmp / v, v, reuse, block))
                    results[v] = summarize(study, time.monotonic() - t0)
                results[v]["operator_errors"] = len(op.errors)
            finally:
                op.stop()
            print(f"{v}: {json.dumps(results[v])}", flush=True)
        kube.close()
    finally:
        cluster.stop()
    base = results.get("naive")
    print(f"\n{'variant':<12} {'wall s':>8} {'÷ naive':>8} {'deploy s':>9}  redeploys (none/frontend/replicas/full)")
    for v, r in results.items():
        ratio = r["wall_s"] / base["wall_s"] if base else float("nan")
        kinds = "/".join(str(r["redeploys"].get(k, 0)) for k in ("none", "frontend", "replicas", "full"))
        print(f"{v:<12} {r['wall_s']:8.1f} {ratio:8.2f} {r['deploy_s']:9.1f}  {kinds}  ({r['shapes']} shapes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
