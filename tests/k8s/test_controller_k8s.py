"""``K8sActuator`` on the real apiserver with the test operator and a real Dynamo frontend + mockers.

The operator launches a dynamo-local stack whose frontend runs the router flags found in the DGD's
frontend args (not the topology annotation), so the test proves the patched args are what serves.
A steady closed loop of requests runs through every switch; requests after each switch must succeed.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

import httpx
import pytest
from k8s_profiles import DYNAMO_RENDERING
from scipy import stats
from test_backend import StackRunning, live_profile, require_dynamo

from autotune.control.k8s_actuator import K8sActuator, frontend_url_for
from autotune.controller import PAPER_PRESETS
from autotune.dynamo.flags import router_from_args
from autotune.k8s import ANN_TOPOLOGY, API_VERSIONS, GROUP, PLURAL
from autotune.k8s.lifecycle import apply, wait_ready
from autotune.k8s.render import frontend_container, render_dgd
from autotune.profile import Profile
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.topology import parse_topology

pytestmark = pytest.mark.slow


def args_launcher(profile: Profile, launched: list[Any]):
    """Start a stack for the DGD's topology with the router its frontend args name; record that router."""
    from autotune.dynamo import install
    from autotune.dynamo.mocker_timing import plan_timing
    from autotune.dynamo.stack import DynamoStack, new_work_dir

    python = install.find_python()
    model_dir = install.model_dir(python)

    def launch(obj: dict[str, Any]) -> StackRunning:
        router = router_from_args(frontend_container(obj)["args"])
        topo = parse_topology(obj["metadata"]["annotations"][ANN_TOPOLOGY]).with_router(router)
        work = new_work_dir("k8s-ctl-")
        plan = plan_timing(profile, topo, work / "timing", timing="mocker", speedup=10.0)
        stack = DynamoStack(profile, topo, python=python, model_dir=model_dir, plan=plan, work_dir=work)
        stack.start()
        launched.append(router)
        return StackRunning(stack)

    return launch


class SteadyLoad:
    """One request at a time against the DGD's frontend, re-resolving its Service when a request fails
    (the test operator publishes each new frontend on a new port, as a rollout updates endpoints)."""

    def __init__(self, kube, namespace: str, dgd: str, model: str) -> None:
        self.kube, self.namespace, self.dgd, self.model = kube, namespace, dgd, model
        self.log: list[tuple[float, float, bool]] = []  # (start, end, ok) in monotonic seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="steady-load")

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        url = None
        body = {"model": self.model, "prompt": "one two three four five six seven eight", "max_tokens": 4}
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            while not self._stop.is_set():
                t0 = time.monotonic()
                ok = False
                try:
                    if url is None:
                        url = frontend_url_for(self.dgd, self.namespace, self.kube, mode="load-balancer").url
                    r = http.post(f"{url}/v1/completions", json=body)
                    ok = r.status_code == 200 and bool(r.json().get("choices"))
                except Exception:  # noqa: BLE001 - a failed request is what the log records
                    ok = False
                self.log.append((t0, time.monotonic(), ok))
                if not ok:
                    url = None
                    time.sleep(0.1)

    def wait_ok(self, after: float, count: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(1 for s, _, ok in self.log if ok and s >= after) < count:
            assert time.monotonic() < deadline, f"fewer than {count} successful requests after t={after:.1f}"
            time.sleep(0.1)


def _workers(obj: dict[str, Any]) -> str:
    """Every non-frontend service/component, serialised: must be byte-identical across a switch."""
    spec = obj["spec"]
    if "services" in spec:
        return json.dumps({k: v for k, v in spec["services"].items() if v.get("componentType") != "frontend"})
    return json.dumps([c for c in spec["components"] if c.get("type") != "frontend"])


def _outage_s(log: list[tuple[float, float, bool]], t0: float) -> float:
    """From the last success before the switch's first failed request to the next success."""
    window = [r for r in log if r[1] >= t0]
    first_fail = next((i for i, r in enumerate(window) if not r[2]), None)
    if first_fail is None:
        return 0.0
    last_fail = max(i for i, r in enumerate(window) if not r[2])
    before = max((e for _, e, ok in log if ok and e <= window[first_fail][0]), default=t0)
    return window[last_fail + 1][0] - before if last_fail + 1 < len(window) else float("nan")


def _mean_interval(xs: list[float], level: float = 0.95) -> str:
    m = statistics.fmean(xs)
    half = stats.t.ppf(0.5 + level / 2, len(xs) - 1) * statistics.stdev(xs) / len(xs) ** 0.5
    return f"{m:.2f} s [{m - half:.2f}, {m + half:.2f}] ({level:.0%} t-interval, n={len(xs)})"


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_switch_patches_only_the_frontend_and_traffic_continues(kube, namespace, operator, api_version) -> None:
    require_dynamo()
    profile = live_profile(namespace, DYNAMO_RENDERING[api_version])
    launched: list[Any] = []
    operator.launch = args_launcher(profile, launched)
    dgd = render_dgd(profile, parse_topology("1P1-1D1"), study="ctl", trial_id="1")
    name = dgd["metadata"]["name"]
    apply(kube, dgd)
    wait_ready(kube, namespace, name, version=api_version, timeout_s=180)
    act = K8sActuator(kube, name, namespace, api_version=api_version, frontend_access="load-balancer")
    assert act.current() == PAPER_PRESETS[BELOW] == launched[-1]
    before = act.read()
    model = profile.model.served_name or profile.model.name
    durations: list[float] = []
    outages: list[float] = []
    try:
        with SteadyLoad(kube, namespace, name, model) as load:
            load.wait_ok(after=0.0, count=5)
            for regime in (TRANSITION, SATURATED, BELOW):
                preset = PAPER_PRESETS[regime]
                t0 = time.monotonic()
                res = act.apply(preset)
                t1 = time.monotonic()
                durations.append(res.duration_s)
                assert res.requests_affected is None and "patched" in res.detail
                load.wait_ok(after=t1, count=5)  # traffic continues on the new frontend
                assert act.current() == preset == launched[-1]  # the args, and what the frontend runs
                outages.append(_outage_s(load.log, t0))
                after = act.read()
                assert _workers(after) == _workers(before)  # only the frontend changed
                assert parse_topology(after["metadata"]["annotations"][ANN_TOPOLOGY]).router == preset
            noop = act.apply(PAPER_PRESETS[BELOW])  # already serving it: nothing patched
            assert noop.requests_affected == 0 and "already" in noop.detail
    finally:
        act.close()
    obj = kube.custom.get_namespaced_custom_object(GROUP, api_version, namespace, PLURAL, name)
    assert obj["metadata"]["generation"] == 4 and operator.errors == []
    # Figures for docs/controller-kubernetes.md (pytest -s): switch = patch -> Ready -> /v1/models answers
    print(f"\n[{api_version}] switch duration {_mean_interval(durations)}; each {[f'{d:.2f}' for d in durations]}")
    print(f"[{api_version}] no successful request for (test operator: stop, then start) {_mean_interval(outages)}")


def test_control_command_switches_the_dgd_and_restores_it_on_exit(
    kube, local_cluster, namespace, operator, api_version, tmp_path
) -> None:
    """`autotune control --dgd … --apply` as its own process: with thresholds below any real TTFT the
    controller must reach saturated, patch the DGD's frontend to the saturated preset, keep serving, and
    at the end of ``--duration`` restore the baseline preset on the DGD."""
    import os
    import subprocess
    import sys

    from k8s_cluster import REPO

    from autotune.control.observe import read_record
    from autotune.control.settings import settings_document
    from autotune.controller import ControllerSettings

    require_dynamo()
    profile = live_profile(namespace, DYNAMO_RENDERING[api_version])
    launched: list[Any] = []
    operator.launch = args_launcher(profile, launched)
    dgd = render_dgd(profile, parse_topology("1P1-1D1"), study="ctlcli", trial_id="1")
    name = dgd["metadata"]["name"]
    apply(kube, dgd)
    wait_ready(kube, namespace, name, version=api_version, timeout_s=180)
    # every TTFT is far above θ2 = 4 µs: the EWMA says "saturated" from the first interval
    settings = ControllerSettings(baseline_ttft_p99_ms=0.001, theta1_x=2.0, theta2_x=4.0, interval_s=1.0, dwell_s=2.0)
    path = tmp_path / "recommended.yaml"
    path.write_text(json.dumps(settings_document(settings)))
    record = tmp_path / "control.jsonl"
    model = profile.model.served_name or profile.model.name
    env = {**os.environ, "PYTHONPATH": str(REPO), "KUBECONFIG": str(local_cluster.kubeconfig)}
    argv = ["control", "--settings", str(path), "--dgd", name, "-N", namespace, "--apply"]
    with SteadyLoad(kube, namespace, name, model) as load:
        load.wait_ok(after=0.0, count=3)
        r = subprocess.run(
            [sys.executable, "-m", "autotune", *argv, "--duration", "40", "--record", str(record)],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=REPO,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        load.wait_ok(after=time.monotonic(), count=3)  # serving after the controller left
    rows = read_record(record)
    switches = [x for x in rows if x.get("type") == "switch"]
    assert switches and switches[0]["ok"] and switches[0]["regime_to"] == SATURATED, switches
    assert switches[-1]["kind"] == "restore" and switches[-1]["ok"], switches
    assert PAPER_PRESETS[SATURATED] in launched  # the operator's frontend really ran the saturated preset
    act = K8sActuator(kube, name, namespace, api_version=api_version, frontend_access="load-balancer")
    try:
        assert act.current() == settings.presets[BELOW] == launched[-1]  # the baseline is back on the DGD
    finally:
        act.close()
    assert operator.errors == []
