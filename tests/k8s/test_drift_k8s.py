"""`autotune drift --dgd` on the real kube-apiserver: the test operator runs the graph as a real local
Dynamo stack; drift finds its frontend through the DGD's Service, probes it, and refuses a DGD that
runs another topology than the study predicted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_cluster import REPO
from test_backend import require_dynamo, stack_launcher

from autotune.errors import EXIT_BAD_INPUT
from autotune.k8s import ANN_TOPOLOGY, GROUP, PLURAL
from autotune.profile import load_profile
from autotune.topology import parse_topology

pytestmark = pytest.mark.slow


def _profile(namespace: str) -> dict:
    return {
        "name": "k8s-drift",
        "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
        "model": "Llama-3.1-8B",
        "dynamo": {"version": "1.6.1", "namespace": namespace, "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1"},
        "workload": {
            "templates": 2,
            "prefix_tokens": 32,
            "input_tokens": {"dist": "fixed", "value": 64},
            "output_tokens": {"dist": "fixed", "value": 8},
            "concurrency": [4],
            "requests_per_point": 60,
            "warmup_requests": 6,
            "cooldown_requests": 6,
        },
        "measurement": {"live_time_budget_s": 15.0},
        "search": {
            "trials": 2,
            "allow_aggregated": False,
            "max_prefill_workers": 1,
            "max_decode_workers": 1,
            "prefill_tp": [1],
            "decode_tp": [1],
            "operating_point": "target",
            "target_concurrency": 4,
        },
        "baselines": ["1P1-1D1"],
    }


def _autotune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=REPO,
    )


def test_drift_finds_the_dgd_frontend_probes_it_and_refuses_another_graph(
    kube, local_cluster, namespace, operator, api_version, tmp_path: Path
) -> None:
    from autotune.k8s.lifecycle import apply, delete_and_wait, wait_ready

    require_dynamo()
    prof_path = tmp_path / "k8s-drift.yaml"
    prof_path.write_text(yaml.safe_dump(_profile(namespace)))
    study = tmp_path / "study"
    r = _autotune("run", "-p", str(prof_path), "-r", str(study), "-o", "json")
    assert r.returncode == 0, r.stderr
    recommended = parse_topology(json.loads(r.stdout)["recommended"])
    operator.launch = stack_launcher(load_profile(study / "profile.resolved.yaml"))
    dgd = yaml.safe_load((study / "dgd.yaml").read_text())  # what the user applied: the study's own manifest
    name = dgd["metadata"]["name"]
    assert dgd["metadata"]["namespace"] == namespace and dgd["apiVersion"].endswith(api_version)
    apply(kube, dgd)
    env = {"KUBECONFIG": str(local_cluster.kubeconfig)}
    try:
        wait_ready(kube, namespace, name, version=api_version, timeout_s=180)
        # the CronJob's invocation: the DGD and its namespace come from the study's dgd.yaml
        r = _autotune("drift", "--study", str(study), "--k8s", "--retune", "never", "-o", "json", env=env)
        assert r.returncode == 0, r.stderr
        rec = json.loads(r.stdout)
        assert rec["topology"] == str(recommended) and rec["frontend"].startswith("http://127.0.0.1:")
        assert rec["probe"]["sent"] > 0 and rec["probe"]["failed"] == 0
        assert len(json.loads((study / "drift" / "history.jsonl").read_text().splitlines()[-1])["figures"]) == 5

        other = "1P1-2D1"  # someone redeployed another shape: its prediction is not this study's
        kube.custom.patch_namespaced_custom_object(
            GROUP, api_version, namespace, PLURAL, name, {"metadata": {"annotations": {ANN_TOPOLOGY: other}}}
        )
        r = _autotune("drift", "--study", str(study), "--dgd", name, "-N", namespace, env=env)
        assert r.returncode == EXIT_BAD_INPUT and "1P1-2D1" in r.stderr and "Traceback" not in r.stderr
        assert len((study / "drift" / "history.jsonl").read_text().splitlines()) == 1
    finally:
        delete_and_wait(kube, namespace, name, version=api_version, timeout_s=120)
