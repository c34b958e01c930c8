"""``autotune drift``: measure the deployed graph, compare with the last study, retune when it matters.

Standalone like every command; ``autotune.cli.app`` registers it. Exit codes: 0 nothing to do
(steady, or drifted with no better topology), 10 a better topology is available, 2/4/5 as elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from autotune.cli.options import with_kube_options
from autotune.cli.output import FORMATS, emit
from autotune.errors import EXIT_IMPROVEMENT_AVAILABLE, InputError

COLUMNS = (
    ("figure", "figure"),
    ("against", "against"),
    ("reference", "reference"),
    ("measured", "measured"),
    ("change", "change"),
    ("significant", "outside noise"),
    ("drifted", "drifted"),
)


def _study_dgd(study_dir: Path) -> tuple[str, str]:
    """The name and namespace of the DGD the study rendered for its recommendation (STUDY/dgd.yaml)."""
    path = study_dir / "dgd.yaml"
    try:
        md = (yaml.safe_load(path.read_text()) or {}).get("metadata") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); pass --dgd and -N") from None
    if not md.get("name"):
        raise InputError(f"{path}: metadata.name missing; pass --dgd and -N")
    return str(md["name"]), str(md.get("namespace") or "")


def _frontend(
    study_dir: Path,
    frontend: str | None,
    k8s: bool,
    dgd: str | None,
    namespace: str | None,
    kube: dict[str, Any],
    predicted: Any,
) -> Any:
    """(url, closer): the frontend given, or the DGD's frontend Service reached like the k8s backend does."""
    k8s = k8s or bool(dgd)
    if bool(frontend) == k8s:
        raise InputError("--frontend / --k8s / --dgd: give one (the frontend URL, or the deployed DGD on Kubernetes)")
    if frontend:
        if not frontend.startswith(("http://", "https://")):
            raise InputError(f"--frontend: {frontend!r} is not an http(s) URL")
        return frontend, None
    name, ns = _study_dgd(study_dir) if not (dgd and namespace) else (dgd, namespace)
    dgd, namespace = dgd or name, namespace or ns
    if not namespace:
        raise InputError("-N/--namespace: required (the study's dgd.yaml names none)")
    from autotune.cli.k8s import connect_kube
    from autotune.drift.deployed import check_same_graph, open_deployed

    graph = open_deployed(
        connect_kube(kube["kubeconfig"], kube["context"]), namespace, str(dgd), access_mode=kube["access"]
    )
    try:
        check_same_graph(graph, predicted)
    except BaseException:
        graph.close()
        raise
    return graph.access.url, graph


@click.command("drift")
@click.option(
    "--study",
    "study_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Results directory of the study whose recommendation is deployed.",
)
@click.option("--frontend", default=None, help="The deployed frontend's base URL (local or reachable).")
@click.option("--k8s", "k8s", is_flag=True, help="Probe the DGD the study rendered (STUDY/dgd.yaml) on Kubernetes.")
@click.option(
    "--dgd", default=None, help="k8s: the deployed DGD's name, when not the study's dgd.yaml (implies --k8s)."
)
@click.option("-N", "--namespace", default=None, help="k8s: the DGD's namespace.")
@with_kube_options
@click.option(
    "--frontend-access",
    "access",
    default="auto",
    show_default=True,
    help="k8s: auto|service-dns|load-balancer|port-forward.",
)
@click.option(
    "--traffic",
    type=click.Path(path_type=Path),
    default=None,
    help="A trace of the real traffic, held against the study's workload (docs/traces.md formats).",
)
@click.option(
    "--traffic-format", type=click.Choice(["mooncake", "aiperf", "autotune"]), default="mooncake", show_default=True
)
@click.option(
    "--traffic-last-s", type=click.FloatRange(1.0, 1e9), default=None, help="Judge only the trace's last S seconds."
)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the drift history is kept (default: STUDY/drift).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.01, 10.0),
    default=0.15,
    show_default=True,
    help="Relative change that counts as drift (when outside the noise too).",
)
@click.option(
    "--min-gain",
    type=click.FloatRange(0.0, 10.0),
    default=0.05,
    show_default=True,
    help="A better topology must beat the deployed one by this much, with its whole interval.",
)
@click.option(
    "--retune",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Re-run the search: only after drift (auto), always, never.",
)
@click.option(
    "--trials", type=click.IntRange(1, 100000), default=60, show_default=True, help="Trials of a retune study."
)
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option(
    "-n",
    "--requests",
    type=click.IntRange(20, 1_000_000),
    default=None,
    help="Probe length before the adaptive rule extends it (default: the profile's).",
)
@click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def drift_cmd(
    study_dir: Path,
    frontend: str | None,
    k8s: bool,
    dgd: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    access: str,
    traffic: Path | None,
    traffic_format: str,
    traffic_last_s: float | None,
    history_dir: Path | None,
    threshold: float,
    min_gain: float,
    retune: str,
    trials: int,
    seed: int,
    requests: int | None,
    fmt: str,
) -> None:
    """Is the deployed graph still what the study predicted? Retune on the simulator when it moved."""
    from autotune.drift.check import DriftOptions, drift_check
    from autotune.drift.prediction import load_prediction
    from autotune.drift.traffic import traffic_spec

    prediction = load_prediction(study_dir)
    window = traffic_spec(traffic, traffic_format, traffic_last_s) if traffic is not None else None
    kube = {"kubeconfig": kubeconfig, "context": context, "access": access}
    url, closer = _frontend(study_dir, frontend, k8s, dgd, namespace, kube, prediction.topology)
    history = history_dir or study_dir / "drift"
    options = DriftOptions(
        threshold=threshold,
        min_gain=min_gain,
        retune=retune,
        trials=trials,
        seed=seed,
        requests=requests,
        traffic=window,
    )
    try:
        record = drift_check(prediction, url, history, history, options)
    finally:
        if closer is not None:
            closer.close()
    rows = [
        {
            "figure": d["figure"],
            "against": d["against"],
            "reference": round(d["reference"], 3),
            "measured": round(d["measured"], 3),
            "change": f"{d['change'] * 100:+.1f} %",
            "significant": d["significant"],
            "drifted": d["drifted"],
        }
        for d in record["figures"]
    ]
    title = f"{record['topology']} @ C={record['concurrency']}: {record['verdict']}" + (
        f"; retune: {record['retune']['verdict']}" if record["retune"] else ""
    )
    emit(record, fmt, rows=rows, columns=COLUMNS, title=title)
    if record["improvement_available"]:
        sys.exit(EXIT_IMPROVEMENT_AVAILABLE)
