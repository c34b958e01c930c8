"""Apply, watch to readiness, fail fast with a reason, delete until gone, clean up by label (real apiserver).

Every test runs once per DGD apiVersion, each on a cluster that serves only that version.
"""

from __future__ import annotations

import time

import pytest
from k8s_profiles import make_profile

from autotune.k8s import API_VERSIONS, FIELD_MANAGER, GROUP, PLURAL
from autotune.k8s.diagnose import PodWatcher
from autotune.k8s.housekeeping import cleanup, list_leftovers, reconcile, served_version, sweep_trials
from autotune.k8s.lifecycle import TrialFailed, apply, delete_and_wait, readiness, wait_ready
from autotune.k8s.render import render_dgd, worker_status
from autotune.topology import RouterSettings, parse_topology

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("api_version", API_VERSIONS)]


def _dgd(ns: str, version: str, shape: str = "1P1-2D1", study: str = "life", trial: str = "1") -> dict:
    prof = make_profile("vllm", namespace=ns)
    return render_dgd(prof, parse_topology(shape), study=study, trial_id=trial, api_version=version)


def _names(kube, ns: str, version: str) -> list[str]:
    return [
        o["metadata"]["name"] for o in kube.custom.list_namespaced_custom_object(GROUP, version, ns, PLURAL)["items"]
    ]


def test_apply_ready_delete_round_trip(kube, namespace, operator, api_version) -> None:
    dgd = _dgd(namespace, api_version)
    name = dgd["metadata"]["name"]
    stored = apply(kube, dgd)
    assert stored["metadata"]["name"] == name
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == [FIELD_MANAGER]
    obj = wait_ready(kube, namespace, name, version=api_version, timeout_s=20)
    assert readiness(obj).ready and worker_status(obj)["decode"]["availableReplicas"] == 2
    assert obj["apiVersion"] == f"nvidia.com/{api_version}"
    gen = obj["metadata"]["generation"]
    assert apply(kube, dgd)["metadata"]["generation"] == gen  # re-apply of the same intent: no new rollout
    delete_and_wait(kube, namespace, name, version=api_version, timeout_s=20)
    assert _names(kube, namespace, api_version) == []
    assert ("finalized", name) in operator.events  # we waited for the operator's finalizer, not just the request
    delete_and_wait(kube, namespace, name, version=api_version, timeout_s=5)  # idempotent


def test_new_generation_waits_for_operator(kube, namespace, operator, api_version) -> None:
    dgd = _dgd(namespace, api_version)
    name = dgd["metadata"]["name"]
    apply(kube, dgd)
    wait_ready(kube, namespace, name, version=api_version, timeout_s=20)
    operator.ready_delay_s = 1.5
    changed = render_dgd(
        make_profile("vllm", namespace=namespace),
        parse_topology("1P1-2D1").with_router(RouterSettings(temperature=0.9)),
        study="life",
        trial_id="1",
        api_version=api_version,
    )
    assert changed["metadata"]["name"] == name
    t0 = time.monotonic()
    obj = wait_ready(kube, namespace, name, version=api_version, timeout_s=20) if apply(kube, changed) else None
    assert obj is not None and obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    assert time.monotonic() - t0 >= 1.0  # the stale Ready=True of generation 1 did not count
    delete_and_wait(kube, namespace, name, version=api_version, timeout_s=20)


def test_never_ready_hits_deadline_with_reason(kube, namespace, operator, api_version) -> None:
    operator.behavior = lambda obj: "never"
    dgd = _dgd(namespace, api_version)
    apply(kube, dgd)
    t0 = time.monotonic()
    with pytest.raises(TrialFailed) as ei:
        wait_ready(kube, namespace, dgd["metadata"]["name"], version=api_version, timeout_s=2.5, slice_s=1)
    assert 2.4 < time.monotonic() - t0 < 6
    assert ei.value.kind == "deadline" and "Ready (state pending: pods starting)" in ei.value.reason
    delete_and_wait(kube, namespace, dgd["metadata"]["name"], version=api_version, timeout_s=20)


@pytest.mark.parametrize(
    ("behavior", "kind", "needle"),
    [
        ("crashloop", "crash-loop", "CrashLoopBackOff"),
        ("imagepull", "image-pull", "ImagePullBackOff"),
        ("unschedulable", "unschedulable", "Insufficient nvidia.com/gpu"),
        ("failed", "operator", "insufficient_capacity"),
    ],
)
def test_failures_are_reported_fast(
    kube, namespace, operator, api_version, behavior: str, kind: str, needle: str
) -> None:
    operator.behavior = lambda obj: behavior
    dgd = _dgd(namespace, api_version, trial=behavior)
    name = dgd["metadata"]["name"]
    apply(kube, dgd)
    t0 = time.monotonic()
    with pytest.raises(TrialFailed) as ei:
        wait_ready(kube, namespace, name, version=api_version, timeout_s=60, slice_s=1, pods=PodWatcher(grace_s=0.5))
    assert time.monotonic() - t0 < 10  # long before the 60 s deadline
    assert ei.value.kind == kind and needle in ei.value.reason
    if behavior in ("crashloop", "imagepull"):
        assert "[events: BackOff: simulated" in ei.value.reason  # the Warning event rides along
    delete_and_wait(kube, namespace, name, version=api_version, timeout_s=20)
    assert kube.core.list_namespaced_pod(namespace).items == []


def test_cleanup_by_label_and_reconcile_on_resume(kube, namespace, operator, api_version) -> None:
    operator.behavior = lambda obj: "never"
    for study, trial in (("alpha", "1"), ("alpha", "2"), ("beta", "1")):
        apply(kube, _dgd(namespace, api_version, study=study, trial=trial))
    other = {
        "apiVersion": f"nvidia.com/{api_version}",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": "not-ours", "namespace": namespace},
        "spec": {"services": {}} if api_version == "v1alpha1" else {"components": []},
    }
    kube.custom.create_namespaced_custom_object(GROUP, api_version, namespace, PLURAL, other)
    assert served_version(kube) == api_version
    assert {lo.trial_id for lo in list_leftovers(kube, namespace, "alpha", version=api_version)} == {"1", "2"}
    rec = reconcile(kube, namespace, "alpha", finished_trials={"1"}, version=api_version, timeout_s=20)
    assert rec.interrupted_trials == ["2"] and len(rec.removed) == 2
    beta = _dgd(namespace, api_version, study="beta")["metadata"]["name"]
    assert sorted(_names(kube, namespace, api_version)) == sorted(["not-ours", beta])
    gone = cleanup(kube, namespace, version=api_version, timeout_s=20)
    assert [lo.study for lo in gone] == ["beta"]
    assert _names(kube, namespace, api_version) == ["not-ours"]  # never touches what autotune did not make


def test_sweep_removes_only_the_dead_workers_trial_graphs(kube, namespace, operator, api_version) -> None:
    """A shared study: a surviving worker deletes the graph of a dead worker's trial, not the live ones."""
    operator.behavior = lambda obj: "never"
    for study, trial in (("shared", "t3"), ("shared", "t4"), ("other", "t3")):
        apply(kube, _dgd(namespace, api_version, study=study, trial=trial))
    gone = sweep_trials(kube, namespace, "shared", {"t3"}, version=api_version, timeout_s=20)
    assert [(lo.study, lo.trial_id) for lo in gone] == [("shared", "t3")]
    left = {(lo.study, lo.trial_id) for lo in list_leftovers(kube, namespace, version=api_version)}
    assert left == {("shared", "t4"), ("other", "t3")}
