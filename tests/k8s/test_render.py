"""Rendering: flags per Dynamo version and framework, names, labels, and validation against the real CRD.

The shape tests here are v1alpha1 (``spec.services``); test_render_v1beta1.py has the v1beta1 ones. The
server dry runs cover both apiVersions, each on a cluster serving only that version.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from k8s_cluster import EXAMPLES_DIRS
from k8s_profiles import make_profile

from autotune.dynamo.flags import router_args
from autotune.errors import InputError
from autotune.k8s import API_VERSIONS, LABEL_STUDY, LABEL_TRIAL, V1ALPHA1
from autotune.k8s.containers import worker_args
from autotune.k8s.housekeeping import plan, pruned_paths
from autotune.k8s.lifecycle import apply
from autotune.k8s.names import MAX_NAME, dgd_name
from autotune.k8s.render import render_dgd, version_of
from autotune.topology import RouterSettings, parse_topology

FRAMEWORKS = ("vllm", "sglang", "trtllm")
SHAPES = ("2A4@tau=0.3,omega=0.5", "1P4-5D4@tau=0.7,omega=1", "1P16-2D8")


def _args(dgd: dict, svc: str) -> list[str]:
    return dgd["spec"]["services"][svc]["extraPodSpec"]["mainContainer"]["args"]


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize(
    ("version", "expect"),
    [
        ((0, 9), ["--kv-overlap-score-weight", "0.5"]),
        ((1, 1), ["--router-kv-overlap-score-weight", "0.5"]),
        ((1, 6), ["--router-prefill-load-scale", "0.5", "--router-kv-overlap-score-credit", "1"]),
    ],
)
def test_router_flags_follow_dynamo_version(version: tuple[int, int], expect: list[str]) -> None:
    args = router_args(version, RouterSettings(temperature=0.7, overlap_weight=0.5))
    assert args[:4] == ["--router-mode", "kv", "--router-temperature", "0.7"]
    assert args[4:] == expect


def test_router_credit_needs_1_3_and_omega_zero_zeroes_credit() -> None:
    with pytest.raises(InputError, match="1.3"):
        router_args((1, 2), RouterSettings(overlap_credit=1.5))
    args = router_args((1, 6), RouterSettings(overlap_weight=0.0, overlap_credit=1.5))
    assert _flag(args, "--router-kv-overlap-score-credit") == "0"
    with pytest.raises(InputError, match="1.7"):
        router_args((1, 7), RouterSettings())


@pytest.mark.parametrize(
    ("fw", "tp_flag"), [("vllm", "--tensor-parallel-size"), ("sglang", "--tp"), ("trtllm", "--tensor-parallel-size")]
)
def test_worker_args_per_framework(fw: str, tp_flag: str) -> None:
    p = make_profile(fw, extra_worker_args=["--x", "1"])
    pre, dec, agg = (worker_args(p, r, 4) for r in ("prefill", "decode", "agg"))
    for a in (pre, dec, agg):
        assert _flag(a, tp_flag) == "4" and a[-2:] == ["--x", "1"]
    assert _flag(pre, "--disaggregation-mode") == "prefill" and _flag(dec, "--disaggregation-mode") == "decode"
    assert "--disaggregation-mode" not in agg
    if fw == "vllm":
        assert "NixlConnector" in _flag(pre, "--kv-transfer-config") and "--kv-transfer-config" not in dec
    if fw == "sglang":
        assert _flag(dec, "--disaggregation-transfer-backend") == "nixl"
    if fw == "trtllm":
        assert "--publish-events-and-metrics" in pre and "--publish-events-and-metrics" in agg
        assert "--publish-events-and-metrics" not in dec


def test_shape_gpus_multinode_secrets_labels() -> None:
    p = make_profile("vllm", secrets=["hf-token", "extra"], model_path="meta-llama/Llama-3.1-8B-Instruct")
    dgd = render_dgd(p, parse_topology("1P16-3D4@tau=0.2,omega=0.1"), study="paper", trial_id="7", api_version=V1ALPHA1)
    svcs = dgd["spec"]["services"]
    assert set(svcs) == {"Frontend", "prefill", "decode"}
    pre, dec = svcs["prefill"], svcs["decode"]
    assert (pre["subComponentType"], pre["replicas"], pre["resources"]["limits"]["gpu"]) == ("prefill", 1, "8")
    assert pre["multinode"] == {"nodeCount": 2} and _flag(_args(dgd, "prefill"), "--tensor-parallel-size") == "16"
    assert (dec["subComponentType"], dec["replicas"], dec["resources"]["limits"]["gpu"]) == ("decode", 3, "4")
    assert "multinode" not in dec
    assert pre["envFromSecret"] == "hf-token"
    assert pre["extraPodSpec"]["mainContainer"]["envFrom"] == [{"secretRef": {"name": "extra"}}]
    assert _flag(_args(dgd, "decode"), "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert {"name": "DYN_LOGGING_JSONL", "value": "1"} in svcs["Frontend"]["envs"]  # decisions readable from the log
    fe = _args(dgd, "Frontend")
    assert _flag(fe, "--router-mode") == "kv" and _flag(fe, "--router-temperature") == "0.2"
    assert _flag(fe, "--router-prefill-load-scale") == "0.1"
    md = dgd["metadata"]
    assert md["labels"][LABEL_STUDY] == "paper" and md["labels"][LABEL_TRIAL] == "7"
    assert dgd["spec"]["labels"] == md["labels"]
    assert md["annotations"]["autotune.dev/topology"] == "1P16-3D4@tau=0.2,omega=0.1"
    agg = render_dgd(p, parse_topology("3A2"), study="paper", trial_id="8", api_version=V1ALPHA1)["spec"]["services"]
    assert set(agg) == {"Frontend", "worker"} and agg["worker"]["subComponentType"] == "decode"


def test_frontend_log_filter_matches_dynamo_local() -> None:
    from autotune.dynamo.stack import FRONTEND_LOG as LOCAL
    from autotune.k8s.containers import FRONTEND_LOG

    assert FRONTEND_LOG == LOCAL  # both backends parse the same selection lines


def test_names_unique_short_and_dns_safe() -> None:
    long_study = "A very long study name about Llama 3.1 405B on GB200 NVL72 (paper section 5)" * 2
    names = {
        dgd_name(s, t) for s in ("paper", "paper-2", long_study, long_study + "x") for t in ("1", "2", "trial-0001")
    }
    assert len(names) == 12
    for n in names:
        assert len(n) <= MAX_NAME and n == n.lower() and n[0].isalpha() and n[-1].isalnum()
        assert all(c.isalnum() or c == "-" for c in n)
    assert dgd_name("paper", "1") == dgd_name("paper", "1")  # stable across resume


# ---- against the real CRD -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rendered_manifest_passes_server_dry_run(kube, namespace, api_version: str, fw: str, shape: str) -> None:
    p = make_profile(fw, namespace=namespace, secrets=["hf-token", "extra"])
    dgd = render_dgd(p, parse_topology(shape), study="crd", trial_id=f"{fw}-{shape[:3]}", api_version=api_version)
    stored = apply(kube, dgd, dry_run=True)
    assert version_of(stored) == api_version
    assert pruned_paths(dgd["spec"], stored["spec"], "spec") == []  # nothing outside the schema
    assert stored["metadata"]["labels"] == dgd["metadata"]["labels"]
    assert (
        kube.custom.list_namespaced_custom_object("nvidia.com", api_version, namespace, "dynamographdeployments")[
            "items"
        ]
        == []
    )


@pytest.mark.slow
@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_secret_references_pass_server_dry_run(kube, namespace, api_version: str) -> None:
    """Secret references become ``envs`` with ``secretKeyRef``: the CRD keeps them (nothing pruned)."""
    p = make_profile(
        "vllm",
        namespace=namespace,
        extra_worker_args=["--hf-token", {"secret": "hf-token", "key": "token"}],
        extra_frontend_args=["--api-key", {"secret": "router-auth", "key": "api-key"}],
    )
    dgd = render_dgd(p, parse_topology("1P1-1D1"), study="crd", trial_id="secret", api_version=api_version)
    stored = apply(kube, dgd, dry_run=True)
    assert pruned_paths(dgd["spec"], stored["spec"], "spec") == []
    if api_version == V1ALPHA1:
        envs = stored["spec"]["services"]["prefill"]["envs"]
    else:
        prefill = next(c for c in stored["spec"]["components"] if c["name"] == "prefill")
        envs = prefill["podTemplate"]["spec"]["containers"][0]["env"]
    assert envs == [
        {"name": "AUTOTUNE_SECRET_HF_TOKEN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    ]


def _decode(dgd: dict) -> dict:
    if version_of(dgd) == V1ALPHA1:
        return dgd["spec"]["services"]["decode"]
    return next(c for c in dgd["spec"]["components"] if c["name"] == "decode")


@pytest.mark.slow
@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_plan_reports_schema_violations_and_creates_nothing(kube, namespace, api_version: str) -> None:
    p = make_profile("vllm", namespace=namespace)
    good = render_dgd(p, parse_topology("1P1-1D1"), study="plan", trial_id="1", api_version=api_version)
    typo = copy.deepcopy(good)
    typo["metadata"]["name"] += "x"
    _decode(typo)["replicaz"] = 2  # pruned silently by the server: plan must notice
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] += "y"
    _decode(bad)["replicas"] = "three"
    checks = {c.name: c for c in plan(kube, [good, typo, bad])}
    assert checks[good["metadata"]["name"]].ok and checks[good["metadata"]["name"]].detail == "would create"
    assert not checks[typo["metadata"]["name"]].ok and "replicaz" in checks[typo["metadata"]["name"]].detail
    assert not checks[bad["metadata"]["name"]].ok and "422" in checks[bad["metadata"]["name"]].detail
    assert (
        kube.custom.list_namespaced_custom_object("nvidia.com", api_version, namespace, "dynamographdeployments")[
            "items"
        ]
        == []
    )


@pytest.mark.slow
@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_shared_examples_still_validate(kube, namespace, shared, api_version: str) -> None:
    """Guards the CRD install itself: the upstream examples of each version pass the same dry run, unpruned."""
    examples = sorted((shared / EXAMPLES_DIRS[api_version]).glob("*.yaml"))
    assert examples, f"no examples in {shared / EXAMPLES_DIRS[api_version]}"
    for f in examples:
        obj = yaml.safe_load(f.read_text())
        assert version_of(obj) == api_version, f
        obj["metadata"]["namespace"] = namespace
        stored = apply(kube, obj, dry_run=True)
        assert pruned_paths(obj["spec"], stored["spec"], "spec") == [], f
