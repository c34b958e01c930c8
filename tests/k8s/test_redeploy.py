"""Keeping a trial's graph for the next: patched in place on the real kube-apiserver, deleted at the end.

The test operator rolls out each generation like Dynamo's (``k8s_rollout``) and serves a fake
frontend, so these run without Dynamo processes: a router-only change restarts only the frontend, a
replica change starts only the added workers, a TP change is a new graph, and what was reused is
recorded per trial. A signal while a kept graph is being patched leaves nothing behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from k8s_cluster import REPO
from k8s_hybrid import SimMeasured
from k8s_operator import signal_on_event
from k8s_profiles import DYNAMO_RENDERING
from k8s_rollout import Step
from test_backend import live_profile

from autotune.backends.k8s import K8sBackend
from autotune.k8s import API_VERSIONS, GROUP, LABEL_TRIAL, PLURAL
from autotune.k8s.redeploy import FRONTEND, FULL, REPLICAS
from autotune.topology import parse_topology
from tests.conftest import fresh_signals

pytestmark = pytest.mark.slow


def _graphs(kube, ns: str, version: str) -> dict[str, dict]:
    items = kube.custom.list_namespaced_custom_object(GROUP, version, ns, PLURAL)["items"]
    return {o["metadata"]["name"]: o for o in items}


def _steps(operator, name: str, generation: int) -> list[Step]:
    return [r.step for r in operator.rollouts if r.dgd == name and r.generation == generation]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_kept_graph_is_patched_by_what_changed(kube, namespace, operator, api_version) -> None:
    profile = live_profile(namespace, DYNAMO_RENDERING[api_version])
    operator.fake_model = profile.model.served_name or profile.model.name
    operator.startup_s = {"frontend": 0.2, "worker": 0.5}
    backend = K8sBackend(kube=kube, study="reuse", ready_timeout_s=120)
    backend.keep_deployments()
    try:
        with backend.deploy(profile, parse_topology("1P1-1D1@tau=0,omega=1"), trial_id="t1") as first:
            assert first.redeploy == FULL and first.deploy_s is not None
        name = first.name
        assert list(_graphs(kube, namespace, api_version)) == [name]  # kept after a clean trial

        with backend.deploy(profile, parse_topology("1P1-1D1@tau=0.5,omega=0.25"), trial_id="t2") as dep:
            assert dep is first and dep.redeploy == FRONTEND
        obj = _graphs(kube, namespace, api_version)[name]
        assert obj["metadata"]["generation"] == 2 and "--router-temperature" in str(obj["spec"])
        assert obj["metadata"]["labels"][LABEL_TRIAL] == "t2"  # the graph names the trial it serves
        assert _steps(operator, name, 2) == [Step("Frontend", "frontend", "restart", 1)]  # workers untouched

        with backend.deploy(profile, parse_topology("1P1-3D1@tau=0.5,omega=0.25"), trial_id="t3") as dep:
            assert dep is first and dep.redeploy == REPLICAS
        assert _steps(operator, name, 3) == [Step("decode", "worker", "start", 2)]  # only the added workers

        with backend.deploy(profile, parse_topology("1P1-1D2@tau=0.5,omega=0.25"), trial_id="t4") as dep:
            assert dep is not first and dep.redeploy == FULL  # TP: a new graph, the old one deleted first
            assert list(_graphs(kube, namespace, api_version)) == [dep.name]
            assert ("finalized", name) in operator.events
        assert {s.action for s in _steps(operator, dep.name, 1)} == {"start"}
    finally:
        backend.close()
    assert _graphs(kube, namespace, api_version) == {}
    assert operator.errors == []


def test_study_records_what_each_trial_reused_and_deletes_the_kept_graph(kube, namespace, operator, tmp_path) -> None:
    """The real study loop: router variations of a shape follow it, and trials.csv says what was reused."""
    from autotune import backends
    from autotune.search import trials
    from autotune.search.study import StudyConfig, run_study

    base = live_profile(namespace)
    profile = base.model_copy(
        update={
            "cluster": base.cluster.model_copy(update={"gpus_per_node": 4}),
            "search": base.search.model_copy(
                update={"prefill_tp": [1], "decode_tp": [1], "max_prefill_workers": 2, "max_decode_workers": 2}
            ),
        }
    )
    operator.fake_model = profile.model.served_name or profile.model.name
    operator.startup_s = {"frontend": 0.1, "worker": 0.3}
    monkey = pytest.MonkeyPatch()
    monkey.setitem(backends.BACKENDS, "k8s", lambda **kw: SimMeasured(kube=kube, **kw))
    try:
        cfg = StudyConfig(tmp_path, 4, "k8s", (("study", "loop"),), seed=3, router_block=2)
        study = run_study(profile, cfg)
    finally:
        monkey.undo()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4
    frame = trials.trials_frame(study).set_index("number")
    for t in done:
        assert frame.loc[t.number, "redeploy"] == t.user_attrs[trials.REDEPLOY]
        assert frame.loc[t.number, "deploy_s"] > 0
    assert done[0].user_attrs[trials.REDEPLOY] == FULL
    for a, b in zip(done, done[1:], strict=False):  # a grouped trial keeps the previous shape: no worker restarts
        if b.user_attrs.get(trials.GROUPED):
            assert parse_topology(b.user_attrs["topology"]).shape() == parse_topology(a.user_attrs["topology"]).shape()
            assert b.user_attrs[trials.REDEPLOY] in ("none", "frontend")
    assert any(t.user_attrs.get(trials.GROUPED) for t in done)
    assert _graphs(kube, namespace, "v1beta1") == {}  # the study's end deleted the kept graph
    assert operator.errors == []


_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from autotune.backends.k8s import K8sBackend
    from autotune.errors import AutotuneError
    from autotune.topology import parse_topology
    from test_backend import live_profile
    backend = K8sBackend(kubeconfig={kubeconfig!r}, study="sigkeep", ready_timeout_s=300)
    backend.keep_deployments()
    profile = live_profile({namespace!r})
    try:
        with backend.deploy(profile, parse_topology("1P1-1D1@tau=0,omega=1"), trial_id="t1"):
            pass
        print("KEPT", flush=True)
        sys.stdin.readline()  # the test makes the frontend slow to restart, then lets us patch
        with backend.deploy(profile, parse_topology("1P1-1D1@tau=0.5,omega=1"), trial_id="t2"):
            pass
    except (AutotuneError, KeyboardInterrupt) as exc:
        print("TRIAL FAILED:", type(exc).__name__, exc, flush=True)
        sys.exit(getattr(exc, "exit_code", 130))
    finally:
        backend.close()
""")


def test_signal_while_a_kept_graph_is_patched_deletes_it(kube, local_cluster, namespace, operator) -> None:
    profile = live_profile(namespace)
    operator.fake_model = profile.model.served_name or profile.model.name
    operator.startup_s = {"frontend": 0.2, "worker": 0.2}
    code = _CHILD.format(
        tests=str(Path(__file__).parent), kubeconfig=str(local_cluster.kubeconfig), namespace=namespace
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=fresh_signals,
    )
    assert child.stdout is not None and child.stdin is not None
    kept = child.stdout.readline()
    assert kept.strip() == "KEPT", kept + child.communicate()[0]
    operator.startup_s["frontend"] = 600.0  # the patched frontend does not come up before the signal
    child.stdin.write("go\n")
    child.stdin.flush()
    out, _ = signal_on_event(child, operator.events, "restart:Frontend", signal.SIGTERM, settle_s=0.5)
    assert child.returncode == 130, out
    assert "TRIAL FAILED: Interrupted" in out, out
    assert _graphs(kube, namespace, "v1beta1") == {}
    assert any(kind == "finalized" for kind, _ in operator.events)
