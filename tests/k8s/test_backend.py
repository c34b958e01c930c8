"""The ``k8s`` backend end to end: real apiserver, test operator, real Dynamo frontend + mockers.

The operator thread starts a real dynamo-local stack (``autotune.dynamo.stack``) for each graph it
sees and publishes its frontend as a LoadBalancer Service at 127.0.0.1, so ``deploy`` →
``run_point`` → ``close`` goes through the same code as on a cluster. SIGTERM/SIGINT tests run
autotune in a child process and check that nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from k8s_cluster import REPO
from k8s_operator import signal_on_event
from k8s_profiles import DYNAMO_RENDERING

from autotune.errors import BackendError
from autotune.k8s import ANN_TOPOLOGY, API_VERSIONS, GROUP, PLURAL, V1BETA1
from autotune.k8s.lifecycle import TrialFailed
from autotune.profile import Profile, profile_from_dict
from autotune.topology import RouterSettings, parse_topology
from tests.conftest import fresh_signals

pytestmark = pytest.mark.slow


def live_profile(namespace: str, version: str = "1.6.1") -> Profile:
    """A one-node profile; Dynamo ``version`` decides the DGD apiVersion (1.6.1: v1beta1)."""
    return profile_from_dict(
        {
            "name": "k8s-live",
            "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
            "model": "Llama-3.1-8B",
            "dynamo": {
                "version": version,
                "namespace": namespace,
                "image": f"nvcr.io/nvidia/ai-dynamo/vllm-runtime:{version}",
            },
            "workload": {
                "templates": 2,
                "prefix_tokens": 32,
                "input_tokens": {"dist": "fixed", "value": 64},
                "output_tokens": {"dist": "fixed", "value": 8},
                "concurrency": [4],
                "requests_per_point": 40,
                "warmup_requests": 4,
                "cooldown_requests": 4,
            },
            "measurement": {"live_time_budget_s": 15.0},  # points continue their stream, briefly
        }
    )


class StackRunning:
    """What the operator keeps per graph: a started ``DynamoStack``."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.port = stack.http_port

    def stop(self) -> None:
        self.stack.stop()


def stack_launcher(profile: Profile):
    from autotune.dynamo import install
    from autotune.dynamo.mocker_timing import plan_timing
    from autotune.dynamo.stack import DynamoStack, new_work_dir

    python = install.find_python()
    model_dir = install.model_dir(python)

    def launch(obj: dict[str, Any]) -> StackRunning:
        topo = parse_topology(obj["metadata"]["annotations"][ANN_TOPOLOGY])
        work = new_work_dir("k8s-op-")
        plan = plan_timing(profile, topo, work / "timing", timing="mocker", speedup=10.0)
        stack = DynamoStack(profile, topo, python=python, model_dir=model_dir, plan=plan, work_dir=work)
        stack.start()
        return StackRunning(stack)

    return launch


def require_dynamo() -> None:
    from autotune.dynamo import install

    if not install.python_available():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Dynamo venv missing; CI must run scripts/setup_dynamo.sh", pytrace=False)
        pytest.skip("Dynamo venv missing (run scripts/setup_dynamo.sh)")


def _left(kube, ns: str, version: str = V1BETA1) -> list[str]:
    return [
        o["metadata"]["name"] for o in kube.custom.list_namespaced_custom_object(GROUP, version, ns, PLURAL)["items"]
    ]


def test_trial_end_to_end_with_real_dynamo(kube, namespace, operator) -> None:
    from autotune.backends.k8s import K8sBackend

    require_dynamo()
    profile = live_profile(namespace)
    operator.launch = stack_launcher(profile)
    backend = K8sBackend(kube=kube, study="e2e", ready_timeout_s=90)
    try:
        dep = backend.deploy(profile, parse_topology("1P1-1D1@tau=0,omega=1"), trial_id="1")
    except TrialFailed:
        pytest.fail(f"deploy failed; operator errors: {operator.errors}")
    with dep:
        assert _left(kube, namespace) == [dep.name]
        point = dep.run_point(4, seed=3, requests=40)
        assert point.backend == "k8s" and point.gpus == 2
        assert (point.requests["status"] == "ok").all() and len(point.requests) == point.meta["requests_run"] >= 40
        assert point.meta["stop_reason"] in ("targets_met", "time_budget") and point.summary is not None
        assert point.meta["frontend_access"] == "load-balancer"  # recorded: not a port-forward, not in-cluster
        assert point.meta["routing_log"].startswith("unavailable")  # no kubelet here, so no pod logs
        assert point.meta["frontend_metrics"]
        first_url = dep.access.url
        try:
            dep.set_router(RouterSettings(temperature=0.5, overlap_weight=0.5))  # frontend-only rollout
        except TrialFailed:
            pytest.fail(f"set_router failed; operator: {operator.events} {operator.errors}")
        assert dep.access.url != first_url  # the operator restarted the stack on generation 2
        obj = kube.custom.get_namespaced_custom_object(GROUP, dep.api_version, namespace, PLURAL, dep.name)
        assert obj["metadata"]["generation"] == 2 and "--router-temperature" in str(obj["spec"])
        assert (dep.run_point(4, seed=4, requests=20).requests["status"] == "ok").all()
        assert {"apply_s", "ready_s", "frontend_s", "deploy_s"} <= set(dep.timings)
    assert _left(kube, namespace) == []
    assert ("teardown", dep.name) in operator.events and operator.errors == []


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_deploy_failure_leaves_nothing_and_says_why(kube, namespace, operator, api_version) -> None:
    """The profile's Dynamo version picks the apiVersion the whole trial speaks (1.4: v1alpha1, 1.6.1: v1beta1)."""
    from autotune.backends.k8s import K8sBackend

    operator.behavior = lambda obj: "crashloop"
    backend = K8sBackend(kube=kube, study="fail", unschedulable_grace_s=0.5)
    profile = live_profile(namespace, DYNAMO_RENDERING[api_version])
    with pytest.raises(TrialFailed) as ei:
        backend.deploy(profile, parse_topology("1A1"), trial_id="9")
    assert ei.value.kind == "crash-loop" and "CrashLoopBackOff" in str(ei.value)
    assert isinstance(ei.value, BackendError)  # the study records it and goes on
    assert ("finalized", operator.events[0][1]) in operator.events  # the operator saw it in its version
    assert _left(kube, namespace, api_version) == [] and kube.core.list_namespaced_pod(namespace).items == []


_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from autotune.backends.k8s import K8sBackend
    from autotune.errors import AutotuneError
    from autotune.topology import parse_topology
    from test_backend import live_profile
    try:
        backend = K8sBackend(kubeconfig={kubeconfig!r}, study="sig", ready_timeout_s=300)
        with backend.deploy(live_profile({namespace!r}), parse_topology("1P1-1D1"), trial_id="t1") as dep:
            time.sleep(300)
    except (AutotuneError, KeyboardInterrupt) as exc:
        print("TRIAL FAILED:", type(exc).__name__, exc, flush=True)
        sys.exit(getattr(exc, "exit_code", 130))
""")


@pytest.mark.parametrize(
    ("sig", "phase"), [(signal.SIGTERM, "waiting"), (signal.SIGINT, "waiting"), (signal.SIGTERM, "serving")]
)
def test_signal_mid_trial_deletes_everything(kube, local_cluster, namespace, operator, sig: int, phase: str) -> None:
    if phase == "waiting":
        operator.behavior = lambda obj: "never"
    else:
        require_dynamo()
        operator.launch = stack_launcher(live_profile(namespace))
    code = _CHILD.format(
        tests=str(Path(__file__).parent), kubeconfig=str(local_cluster.kubeconfig), namespace=namespace
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=fresh_signals,
    )
    want = "ready" if phase == "serving" else "reconcile:never"
    # serving: after the pause the child is inside the `with` body
    out, _ = signal_on_event(child, operator.events, want, sig, settle_s=0.5 if phase == "waiting" else 1.5)
    assert child.returncode == 130, out
    assert "TRIAL FAILED: Interrupted" in out or "TRIAL FAILED: KeyboardInterrupt" in out, out
    assert _left(kube, namespace) == []
    assert any(kind == "finalized" for kind, _ in operator.events)  # deleted through the operator, not abandoned
