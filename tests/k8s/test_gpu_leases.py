"""Parallel live trials inside the GPU budget, on the real apiserver with the test operator.

Three ``autotune worker`` processes share a study in a real PostgreSQL, backend k8s, on a 24-GPU
profile (3 nodes × 8) whose topologies take 8 to 24 GPUs; the operator keeps every graph pending
for a few seconds before Ready, so trials overlap. At no moment may the graphs the operator holds
need more than 24 GPUs together — checked from the operator's own ledger of what existed when,
not from the leases — and the study ends with every trial finished.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from k8s_cluster import REPO
from k8s_profiles import DYNAMO_RENDERING, make_profile
from operator_ledger import manifest_gpus
from test_backend import live_profile

from autotune.k8s import API_VERSIONS, GROUP, PLURAL
from autotune.k8s.render import render_dgd
from autotune.search.leases import LEASE_GPUS, LEASE_NODES, LEASE_WAIT_S
from autotune.search.workers import WORKER, rdb_url
from autotune.topology import parse_topology
from tests.pg_cluster import PgCluster, cluster_or_skip

TRIALS, WORKERS, BUDGET_GPUS = 9, 3, 24
READY_DELAY_S = 5.0  # each graph stays pending this long: the workers' trials overlap
DEADLINE_S = 1500  # generous: a busy 2-core machine
WAIT_LINE = re.compile(r"trial #\d+ \S+ needs \d+ GPUs and waits: \d+ of 24 are leased")


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    yield from cluster_or_skip()


def _profile(tmp_path: Path, namespace: str) -> Path:
    data = live_profile(namespace).model_dump(mode="json", exclude={"source"})
    data["name"] = "leases"
    data["cluster"] = {"nodes": 3, "gpu": "H100", "gpus_per_node": 8}
    data["search"] = {
        "trials": TRIALS,
        "prefill_tp": [4, 8],
        "decode_tp": [4, 8],
        "aggregated_tp": [8],
        "max_prefill_workers": 2,
        "max_decode_workers": 2,
        "min_gpus": 8,
        "operating_point": "grid",
    }
    # two 8-GPU graphs first (they run side by side from the start), then two of 24 GPUs each, which
    # cannot run beside anything: the workers asking for them wait, first come first served
    data["baselines"] = ["1A8", "1P4-1D4", "1P8-2D8", "3A8"]
    path = tmp_path / "leases.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("shape", ["1P16-1D8", "3A8", "2P4-1D8"])
def test_the_operator_ledger_reads_gpus_from_the_manifest(api_version: str, shape: str) -> None:
    """GPU limit × replicas × nodes of every worker pod, in either apiVersion: what the topology needs."""
    topo = parse_topology(shape)
    dgd = render_dgd(make_profile(version=DYNAMO_RENDERING[api_version]), topo, study="s", trial_id="t1")
    assert dgd["apiVersion"].endswith(api_version) and manifest_gpus(dgd) == topo.gpus


@pytest.mark.slow
def test_three_workers_never_hold_more_gpus_than_the_cluster(
    kube, local_cluster, namespace, operator, pg: PgCluster, tmp_path: Path, api_version: str
) -> None:
    operator.ready_delay_s = READY_DELAY_S
    url = pg.create_db("leases")
    profile, results, logs = _profile(tmp_path, namespace), tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KUBECONFIG": str(local_cluster.kubeconfig),
        "AUTOTUNE_STORAGE": url,
        "AUTOTUNE_STUDY": "leases",
    }
    args = ["worker", "-p", str(profile), "-b", "k8s", "-n", str(TRIALS), "-r", str(results)]
    args += ["--heartbeat", "1", "--stale-after", "8", "-o", "json"]
    # one trial per shape in a row: router blocks would run one worker's 16-GPU shape three times over
    # while the others' 16- and 24-GPU trials cannot fit beside it (kept graphs still reused and leased)
    args += ["--router-block", "1"]
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("lease_worker.py")), *args, "--worker-index", str(i)],
            stdout=subprocess.PIPE,
            stderr=open(logs / f"w{i}.log", "w"),  # noqa: SIM115 - closed with the process
            text=True,
            env=env,
            cwd=REPO,
        )
        for i in range(WORKERS)
    ]
    t0 = time.monotonic()
    try:
        outs = []
        for p in procs:
            out, _ = p.communicate(timeout=DEADLINE_S)
            assert p.returncode == 0, (out, "".join(f.read_text() for f in sorted(logs.glob("*.log"))))
            outs.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    wall_s = time.monotonic() - t0

    # the operator's own view: never more than the cluster's GPUs at once, every graph gone at the end
    peak, at_peak = operator.ledger.peak()
    taken = [e for e in operator.ledger.timeline if e[2] > 0]
    assert 0 < peak <= BUDGET_GPUS, (peak, at_peak, operator.ledger.timeline)
    assert sum(e[2] for e in operator.ledger.timeline) == 0  # every graph torn down
    assert kube.custom.list_namespaced_custom_object(GROUP, api_version, namespace, PLURAL)["items"] == []
    assert operator.errors == []

    # the study: every trial finished (measured), each with the GPUs it leased and how long it waited
    study = optuna.load_study(study_name="autotune-leases", storage=rdb_url(url))
    done = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.PRUNED]
    assert [t.state.name for t in done] == ["COMPLETE"] * TRIALS
    assert len(taken) == TRIALS  # one graph per trial, each seen by the operator
    for t in done:
        gpus = parse_topology(t.user_attrs["topology"]).gpus
        assert t.user_attrs[LEASE_GPUS] == gpus and 8 <= gpus <= BUDGET_GPUS
        nodes = dict(part.split(":") for part in t.user_attrs[LEASE_NODES].split(","))
        assert sum(int(g) for g in nodes.values()) == gpus and all(int(g) <= 8 for g in nodes.values())
    waits = sorted(round(t.user_attrs[LEASE_WAIT_S], 1) for t in done)
    log_text = "".join(f.read_text() for f in sorted(logs.glob("*.log")))
    wait_lines = len(WAIT_LINE.findall(log_text))
    said = [ln for ln in log_text.splitlines() if WAIT_LINE.search(ln) or "after waiting" in ln]
    assert wait_lines > 0 and waits[-1] > 0  # the 24-GPU baselines cannot run beside anything
    overlap = max(len(_alive_at(operator.ledger.timeline, e[0])) for e in taken)
    assert overlap >= 2, [
        (round(t, 1), n[-2:], g) for t, n, g in operator.ledger.timeline
    ]  # side by side when they fit
    by_worker = {w: sum(t.user_attrs.get(WORKER) == w for t in done) for w in (o["worker"] for o in outs)}
    writers = {o["results_written_by"] for o in outs}
    assert len(writers) == 1 and (results / "trials.csv").exists()
    csv_head = (results / "trials.csv").read_text().splitlines()[0].split(",")
    assert {LEASE_WAIT_S, LEASE_GPUS, LEASE_NODES} <= set(csv_head)
    print(
        f"\ngpu leases: {TRIALS} trials, {WORKERS} workers, peak {peak}/{BUDGET_GPUS} GPUs held at once "
        f"({', '.join(at_peak)}), up to {overlap} graphs at once, GPUs per trial "
        f"{sorted(e[2] for e in taken)}, lease waits (s) {waits}, {wait_lines} wait lines, "
        f"per worker {by_worker}, wall {wall_s:.0f} s"
    )
    print("\n".join(said[:4]))


def _alive_at(timeline: list[tuple[float, str, int]], when: float) -> set[str]:
    alive: set[str] = set()
    for t, name, delta in sorted(timeline):
        if t > when:
            break
        (alive.add if delta > 0 else alive.discard)(name)
    return alive
