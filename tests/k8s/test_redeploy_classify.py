"""What a change between two trials' graphs costs: autotune's prediction against the test operator's rollout.

``autotune.k8s.redeploy.classify`` predicts what Dynamo's operator redoes; ``k8s_rollout.plan_rollout``
(the test operator) diffs the specs on its own. Both run on rendered manifests of both apiVersions.
"""

from __future__ import annotations

import pytest
from k8s_profiles import DYNAMO_RENDERING, make_profile
from k8s_rollout import Step, plan_rollout

from autotune.k8s import API_VERSIONS, LABEL_TRIAL
from autotune.k8s.redeploy import FRONTEND, FULL, NONE, REPLICAS, classify, graft
from autotune.k8s.render import render_dgd
from autotune.topology import parse_topology

CASES = [  # running, next, predicted class, what the operator restarts/starts/stops
    ("1P1-1D1@tau=0,omega=1", "1P1-1D1@tau=0,omega=1", NONE, []),
    ("1P1-1D1@tau=0,omega=1", "1P1-1D1@tau=0.5,omega=0.25", FRONTEND, [("Frontend", "restart", 1)]),
    ("1P1-1D1@tau=0,omega=1", "1P1-3D1@tau=0,omega=1", REPLICAS, [("decode", "start", 2)]),
    ("2P1-3D1@tau=0,omega=1", "1P1-3D1@tau=0,omega=1", REPLICAS, [("prefill", "stop", 1)]),
    (
        "1P1-1D1@tau=0,omega=1",
        "1P1-2D1@tau=0.3,omega=1",
        REPLICAS,
        [("Frontend", "restart", 1), ("decode", "start", 1)],
    ),
    ("1P1-1D1@tau=0,omega=1", "1P1-1D2@tau=0,omega=1", FULL, [("decode", "restart", 1)]),
    ("2A1@tau=0,omega=1", "1P1-1D1@tau=0,omega=1", FULL, None),  # other components: another graph
]


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize(("running", "wanted", "kind", "steps"), CASES)
def test_prediction_matches_the_operators_rollout(api_version, running, wanted, kind, steps) -> None:
    profile = make_profile(version=DYNAMO_RENDERING[api_version])
    old = render_dgd(profile, parse_topology(running), study="s", trial_id="t1")
    new = graft(render_dgd(profile, parse_topology(wanted), study="s", trial_id="t2"), old)
    assert classify(old, new).kind == kind
    if steps is not None:
        got = [(s.component, s.action, s.pods) for s in plan_rollout(old, new)]
        assert sorted(got) == sorted(steps)


def test_graft_keeps_what_the_pods_carry_and_names_the_new_trial() -> None:
    profile = make_profile()
    old = render_dgd(profile, parse_topology("1P1-1D1"), study="s", trial_id="t1")
    new = graft(render_dgd(profile, parse_topology("1P1-1D1@tau=0.5,omega=1"), study="s", trial_id="t2"), old)
    assert new["metadata"]["name"] == old["metadata"]["name"]
    assert new["metadata"]["labels"][LABEL_TRIAL] == "t2"  # sweeps by trial label find the graph
    assert new["spec"]["labels"] == old["spec"]["labels"]  # pod labels unchanged: no worker rollout
    assert classify(old, new).kind == FRONTEND
    ungrafted = render_dgd(profile, parse_topology("1P1-1D1@tau=0.5,omega=1"), study="s", trial_id="t2")
    assert classify(old, ungrafted).kind == FULL  # another name: another graph


def test_image_change_is_a_full_redeploy() -> None:
    old = render_dgd(make_profile(), parse_topology("1P1-1D1"), study="s", trial_id="t1")
    other = make_profile(image="nvcr.io/nvidia/ai-dynamo/vllm-runtime:9.9.9")
    new = graft(render_dgd(other, parse_topology("1P1-1D1"), study="s", trial_id="t2"), old)
    assert classify(old, new).kind == FULL
    assert {(s.component, s.action) for s in plan_rollout(old, new)} >= {("prefill", "restart"), ("decode", "restart")}
    assert Step("Frontend", "frontend", "restart", 1) in plan_rollout(old, new)
