"""CLI against the real apiserver: ``autotune cleanup``, ``plan`` dry runs, ``run --backend k8s`` (+ resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_cluster import REPO
from k8s_operator import signal_on_event
from k8s_profiles import DYNAMO_RENDERING
from test_backend import live_profile, require_dynamo

from autotune.errors import InputError
from autotune.k8s import API_VERSIONS, GROUP, PLURAL, V1BETA1
from autotune.k8s.client import KubeOptions, connect
from autotune.k8s.lifecycle import apply
from autotune.k8s.render import render_dgd
from autotune.topology import parse_topology

pytestmark = pytest.mark.slow


def _autotune(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _left(kube, ns: str, version: str = V1BETA1) -> list[str]:
    return [
        o["metadata"]["name"] for o in kube.custom.list_namespaced_custom_object(GROUP, version, ns, PLURAL)["items"]
    ]


def _profile_file(tmp_path: Path, namespace: str, version: str = "1.6.1", **search: object) -> Path:
    data = live_profile(namespace, version).model_dump(mode="json", exclude={"source"})
    data["cluster"] = {"nodes": 1, "gpu": "H100", "gpus_per_node": 2}
    data["model"] = "Llama-3.1-8B"
    data["search"] = {
        "trials": 2,
        "prefill_tp": [1],
        "decode_tp": [1],
        "aggregated_tp": [1],
        "max_prefill_workers": 1,
        "max_decode_workers": 1,
        "operating_point": "grid",
        **search,
    }
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_loading_is_quiet_and_names_bad_flags(local_cluster, capsys) -> None:
    k = connect(KubeOptions(kubeconfig=str(local_cluster.kubeconfig)))
    assert (k.in_cluster, k.context, k.default_namespace) == (False, "t", "default")
    k.close()
    with pytest.raises(InputError, match="--context"):
        connect(KubeOptions(kubeconfig=str(local_cluster.kubeconfig), context="nope"))
    with pytest.raises(InputError, match="--in-cluster"):
        connect(KubeOptions(in_cluster=True))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_cleanup_command(kube, local_cluster, namespace, operator, api_version) -> None:
    """Without a profile, cleanup lists and deletes in the version the cluster serves."""
    operator.behavior = lambda obj: "never"
    prof = live_profile(namespace, DYNAMO_RENDERING[api_version])
    for study, trial in (("s1", "1"), ("s2", "1")):
        apply(kube, render_dgd(prof, parse_topology("1A1"), study=study, trial_id=trial))
    env = {"KUBECONFIG": str(local_cluster.kubeconfig)}
    dry = _autotune("cleanup", "-N", namespace, "--study", "s1", "--dry-run", "-o", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert [r["study"] for r in json.loads(dry.stdout)["would_delete"]] == ["s1"]  # stdout is pure JSON
    assert len(_left(kube, namespace, api_version)) == 2
    done = _autotune("cleanup", "-N", namespace, "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(r["study"] for r in json.loads(done.stdout)["deleted"]) == ["s1", "s2"]
    assert _left(kube, namespace, api_version) == []
    bad = _autotune("cleanup", "-N", namespace, "--context", "nope", env=env)
    assert bad.returncode == 2 and "--context" in bad.stderr


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_plan_validates_against_cluster_and_creates_nothing(
    kube, local_cluster, namespace, tmp_path, api_version
) -> None:
    from autotune.cli.k8s import plan_topologies, validate_plan_against_cluster
    from autotune.profile import load_profile

    version = DYNAMO_RENDERING[api_version]
    path = _profile_file(tmp_path, namespace, version, prefill_tp=[1, 2], decode_tp=[1], aggregated_tp=[1, 2])
    # 1P2-1D1 needs 3 GPUs of the 2 the profile has: infeasible shapes are not deployed, so not planned
    assert {t.shape() for t in plan_topologies(load_profile(path))} == {"1P1-1D1", "1A1", "1A2"}
    checks = validate_plan_against_cluster(str(path), kubeconfig=str(local_cluster.kubeconfig))
    assert len(checks) == 3 and all(c.ok for c in checks)
    out = _autotune(
        "plan",
        "-p",
        str(path),
        "-b",
        "k8s",
        "-n",
        "2",
        "-r",
        str(tmp_path / "plan"),
        "-o",
        "json",
        env={"KUBECONFIG": str(local_cluster.kubeconfig)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("k8s dry run") == 3 and json.loads(out.stdout)["recommended"]
    assert _left(kube, namespace, api_version) == []


def test_run_backend_k8s_end_to_end_then_sigterm_and_resume(
    kube, local_cluster, namespace, operator, tmp_path, monkeypatch
) -> None:
    """``autotune run --backend k8s``: SIGTERM mid-trial leaves nothing; ``--resume`` finishes the study."""
    require_dynamo()
    from test_backend import stack_launcher

    from autotune import backends, cli
    from autotune.backends.k8s import K8sBackend, K8sDeployment

    path = _profile_file(tmp_path, namespace)
    results = tmp_path / "results"
    env = {"KUBECONFIG": str(local_cluster.kubeconfig), "AUTOTUNE_STUDY": "clirun"}

    # 1) the first trial never becomes ready; SIGTERM arrives while autotune waits for it
    operator.behavior = lambda obj: "never"
    child = subprocess.Popen(
        [sys.executable, "-m", "autotune", "run", "-p", str(path), "-b", "k8s", "-r", str(results), "-o", "json"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = signal_on_event(child, operator.events, "reconcile:never", signal.SIGTERM)
    assert child.returncode == 130, err
    assert _left(kube, namespace) == []

    # 2) resume in-process, with routing decisions read from the operator's local frontend log
    operator.behavior = lambda obj: "ready"
    operator.launch = stack_launcher(live_profile(namespace))

    def logs(dep: K8sDeployment, since_s: float) -> tuple[str, str]:
        stack = operator._running[dep.name].stack
        return stack.frontend.log_path.read_text(errors="replace"), "test operator frontend log"

    monkeypatch.setitem(backends.BACKENDS, "k8s", lambda **kw: K8sBackend(**kw, frontend_logs=logs))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as ei:
        cli.main(["run", "-p", str(path), "-b", "k8s", "-r", str(results), "--resume", "-o", "json"])
    assert ei.value.code == 0
    assert _left(kube, namespace) == []
    import optuna

    study = optuna.load_study(
        study_name=None,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(results / "study.journal"))
        ),
    )
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]  # failed trials count as finished
    assert "interrupted" in study.trials[0].user_attrs.get("fail_reason", "")
    meta = json.loads(study.trials[1].user_attrs["meta"])
    assert meta["frontend_access"] == "load-balancer" and meta["backend"] == "k8s"  # how the frontend was reached
    assert "selections" in meta["routing_log"] and not meta["routing_log"].startswith("unavailable")
    assert operator.errors == []
