"""``nvidia.com/v1beta1`` rendering: version selection, shape, strict schema validation and the CEL rules.

Validation is offline against the shared CRD (k8s_schema.py): strict (unknown fields rejected) for every
framework and shape, and Python equivalents of the 18 CEL rules kube-apiserver 1.20 cannot run. The server
dry runs of both versions are in test_render.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from k8s_profiles import make_profile
from k8s_schema import RULES, cel_violations, crd_rules, strict_errors

from autotune.cli import main
from autotune.errors import InputError
from autotune.k8s import API_VERSIONS, V1ALPHA1, V1BETA1
from autotune.k8s.lifecycle import readiness
from autotune.k8s.render import api_version_for, render_dgd, version_of, worker_services, worker_status
from autotune.profile import load_profile
from autotune.topology import parse_topology

FRAMEWORKS = ("vllm", "sglang", "trtllm")
SHAPES = ("2A4@tau=0.3,omega=0.5", "1P4-5D4@tau=0.7,omega=1", "1P16-2D8", "1A16")  # agg, disagg, multinode


def _component(dgd: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in dgd["spec"]["components"] if c["name"] == name)


def _main(dgd: dict[str, Any], name: str) -> dict[str, Any]:
    containers = _component(dgd, name)["podTemplate"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main"]
    main_container: dict[str, Any] = containers[0]
    return main_container


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# ---- which version --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dynamo", "expect"),
    [("0.9.0", V1ALPHA1), ("1.4.2", V1ALPHA1), ("1.4", V1ALPHA1), ("1.5.0", V1BETA1), ("1.6.1", V1BETA1)],
)
def test_dynamo_version_picks_the_api_version(dynamo: str, expect: str) -> None:
    p = make_profile("vllm", version=dynamo)
    assert api_version_for(p) == expect
    dgd = render_dgd(p, parse_topology("1P1-1D1"), study="v", trial_id="1")
    assert dgd["apiVersion"] == f"nvidia.com/{expect}" and version_of(dgd) == expect
    assert ("components" in dgd["spec"]) == (expect == V1BETA1) and ("services" in dgd["spec"]) == (expect == V1ALPHA1)


@pytest.mark.parametrize("override", API_VERSIONS)
@pytest.mark.parametrize("dynamo", ["1.4.0", "1.6.1"])
def test_override_beats_the_profile(dynamo: str, override: str) -> None:
    dgd = render_dgd(
        make_profile("sglang", version=dynamo), parse_topology("2A2"), study="o", trial_id="1", api_version=override
    )
    assert version_of(dgd) == override


def test_unknown_api_version_is_input_error() -> None:
    with pytest.raises(InputError, match="v2.*v1alpha1, v1beta1"):
        render_dgd(make_profile(), parse_topology("1A1"), study="o", trial_id="1", api_version="v2")
    with pytest.raises(InputError, match="apiVersion 'apps/v1'"):
        version_of({"apiVersion": "apps/v1"})


def test_shipped_profiles() -> None:
    assert api_version_for(load_profile("paper-70b-1p5d")) == V1ALPHA1  # Dynamo 0.9.0, as in the paper
    assert api_version_for(load_profile("h100-70b")) == V1BETA1  # Dynamo 1.6.1


def test_dgd_command_api_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    for args, expect in (
        ([], V1BETA1),
        (["--api-version", "v1alpha1"], V1ALPHA1),
        (["--api-version", "v1beta1"], V1BETA1),
    ):
        with pytest.raises(SystemExit) as ei:
            main(["dgd", "-p", "h100-70b", "-t", "1P8-2D8", *args])
        assert ei.value.code == 0
        assert version_of(yaml.safe_load(capsys.readouterr().out)) == expect
    with pytest.raises(SystemExit) as ei:
        main(["dgd", "-p", "paper-70b-1p5d", "-t", "1P8-2D8"])
    assert ei.value.code == 0 and version_of(yaml.safe_load(capsys.readouterr().out)) == V1ALPHA1
    with pytest.raises(SystemExit) as ei:
        main(["dgd", "-p", "h100-70b", "-t", "1P8-2D8", "--api-version", "v1"])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and "--api-version" in err and "v1alpha1" in err and err.strip().count("\n") == 0


# ---- shape ------------------------------------------------------------------------------------------


def test_shape_gpus_multinode_secrets_labels() -> None:
    p = make_profile("vllm", secrets=["hf-token", "extra"], model_path="meta-llama/Llama-3.1-8B-Instruct")
    dgd = render_dgd(p, parse_topology("1P16-3D4@tau=0.2,omega=0.1"), study="paper", trial_id="7")
    assert [c["name"] for c in dgd["spec"]["components"]] == ["Frontend", "prefill", "decode"]
    assert [c["type"] for c in dgd["spec"]["components"]] == ["frontend", "prefill", "decode"]
    pre, dec = _component(dgd, "prefill"), _component(dgd, "decode")
    assert pre["replicas"] == 1 and pre["multinode"] == {"nodeCount": 2} and dec["replicas"] == 3
    assert "multinode" not in dec
    assert _main(dgd, "prefill")["resources"] == {"limits": {"nvidia.com/gpu": "8"}}  # per node: 2 x 8 = TP16
    assert _main(dgd, "decode")["resources"] == {"limits": {"nvidia.com/gpu": "4"}}
    assert _flag(_main(dgd, "prefill")["args"], "--tensor-parallel-size") == "16"
    assert _main(dgd, "prefill")["command"] == ["python3", "-m", "dynamo.vllm"]
    assert _main(dgd, "decode")["envFrom"] == [{"secretRef": {"name": "hf-token"}}, {"secretRef": {"name": "extra"}}]
    assert _flag(_main(dgd, "decode")["args"], "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    fe = _main(dgd, "Frontend")
    assert fe["command"] == ["python3", "-m", "dynamo.frontend"] and "resources" not in fe
    assert {"name": "DYN_LOGGING_JSONL", "value": "1"} in fe["env"]  # decisions readable from the log
    assert _flag(fe["args"], "--router-mode") == "kv" and _flag(fe["args"], "--router-temperature") == "0.2"
    md = dgd["metadata"]
    assert dgd["spec"]["labels"] == md["labels"] and md["annotations"]["autotune.dev/topology"].startswith("1P16-3D4")
    assert worker_services(dgd) == {"prefill": 1, "decode": 3}
    agg = render_dgd(p, parse_topology("3A2"), study="paper", trial_id="8")
    assert [(c["name"], c["type"]) for c in agg["spec"]["components"]] == [
        ("Frontend", "frontend"),
        ("worker", "worker"),
    ]
    assert worker_services(agg) == {"worker": 3}


def test_both_versions_run_the_same_containers() -> None:
    """Only the CRD shape differs: image, command, args and GPUs per pod are the same in both."""
    p = make_profile("sglang", secrets=["hf-token"])
    topo = parse_topology("1P16-2D8@tau=0.4,omega=0.3")
    old = render_dgd(p, topo, study="s", trial_id="1", api_version=V1ALPHA1)
    new = render_dgd(p, topo, study="s", trial_id="1", api_version=V1BETA1)
    assert old["metadata"] == new["metadata"]
    for name, svc in old["spec"]["services"].items():
        mc, main_container = svc["extraPodSpec"]["mainContainer"], _main(new, name)
        for key in ("image", "command", "args"):
            assert mc[key] == main_container[key], (name, key)
        assert svc.get("resources", {}).get("limits", {}).get("gpu") == main_container.get("resources", {}).get(
            "limits", {}
        ).get("nvidia.com/gpu")
        assert svc.get("multinode") == _component(new, name).get("multinode")
    assert worker_services(old) == worker_services(new)


@pytest.mark.parametrize(
    ("version", "status_key", "condition"),
    [(V1ALPHA1, "services", "Ready"), (V1BETA1, "components", "Ready"), (V1BETA1, "components", "Available")],
)
def test_readiness_reads_the_version_status(version: str, status_key: str, condition: str) -> None:
    dgd = render_dgd(make_profile(), parse_topology("1P1-2D1"), study="r", trial_id="1", api_version=version)
    counts = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "componentKind": "Deployment"}
    obj = {
        **dgd,
        "metadata": {**dgd["metadata"], "generation": 1},
        "status": {
            "observedGeneration": 1,
            "state": "successful",
            "conditions": [{"type": condition, "status": "True"}],
            status_key: {
                "prefill": {**counts, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
                "decode": counts,
            },
        },
    }
    assert readiness(obj).ready and set(worker_status(obj)) == {"prefill", "decode"}
    short = copy.deepcopy(obj)
    short["status"][status_key]["decode"]["availableReplicas"] = 1
    assert not readiness(short).ready and "decode replicas 1/2" in readiness(short).waiting_for
    other = copy.deepcopy(obj)
    other["status"][{"services": "components", "components": "services"}[status_key]] = other["status"].pop(status_key)
    assert not readiness(other).ready  # the other version's status key is not read


# ---- strict schema validation -----------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_rendered_manifest_validates_strictly(shared, api_version: str, fw: str, shape: str) -> None:
    p = make_profile(
        fw,
        secrets=["hf-token", "extra"],
        extra_worker_args=["--hf-token", {"secret": "hf-token", "key": "token"}],
        extra_frontend_args=["--api-key", {"secret": "router-auth", "key": "api-key"}],
    )
    dgd = render_dgd(p, parse_topology(shape), study="strict", trial_id=f"{fw}-{shape[:3]}", api_version=api_version)
    assert strict_errors(shared, api_version, dgd) == []
    if api_version == V1BETA1:
        assert cel_violations(dgd) == []


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["spec"].update(services={}), "'services' was unexpected"),  # the v1alpha1 shape
        (lambda d: d["spec"]["components"][1].update(componentType="worker"), "'componentType' was unexpected"),
        (lambda d: _main(d, "decode").update(mainContainer={}), "'mainContainer' was unexpected"),
        (lambda d: d["spec"]["components"][1].update(type="encoder"), "'encoder' is not one of"),
        (lambda d: d["spec"]["components"][1].update(replicas=-1), "-1 is less than the minimum of 0"),
        (lambda d: d["spec"]["components"][1].pop("name"), "'name' is a required property"),
        (lambda d: d["spec"]["components"][1].update(multinode={"nodeCount": 1}), "1 is less than the minimum of 2"),
        (lambda d: _main(d, "decode")["resources"]["limits"].update({"nvidia.com/gpu": "one"}), "'one' does not match"),
        (lambda d: d["spec"]["components"][1].update(name="bad_name"), "does not match"),
    ],
)
def test_strict_validation_rejects(shared, mutate: Callable[[dict[str, Any]], Any], needle: str) -> None:
    dgd = render_dgd(make_profile(), parse_topology("1P1-2D1"), study="bad", trial_id="1", api_version=V1BETA1)
    assert strict_errors(shared, V1BETA1, dgd) == []
    mutate(dgd)
    errors = strict_errors(shared, V1BETA1, dgd)
    assert any(needle in e for e in errors), errors


def test_v1alpha1_validates_strictly_but_not_as_v1beta1(shared) -> None:
    dgd = render_dgd(make_profile(), parse_topology("1P1-2D1"), study="x", trial_id="1", api_version=V1ALPHA1)
    assert strict_errors(shared, V1ALPHA1, dgd) == []
    assert any(
        "'services' was unexpected" in e
        for e in strict_errors(shared, V1BETA1, {**dgd, "apiVersion": "nvidia.com/v1beta1"})
    )


# ---- CEL rules ----------------------------------------------------------------------------------------


def test_cel_equivalents_cover_every_rule_in_the_crd(shared) -> None:
    """If upstream adds, moves or rewords a rule, this fails until k8s_schema.RULES follows."""
    in_crd = crd_rules(shared)
    assert len(in_crd) == len(RULES) == 18
    assert {(p, m) for p, _, m in in_crd} == {(r.path, r.message) for r in RULES}


def _kv(**policy: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["spec"].setdefault("experimental", {}).update(kvTransferPolicy=policy)


def _gms(**gms: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: _component(d, "decode").setdefault("experimental", {}).update(gpuMemoryService=gms)


def _sidecar(**c: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: _component(d, "decode")["podTemplate"]["spec"]["containers"].append({"name": "side", **c})


CEL_CASES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("spec.restart must be unset on create", lambda d: d["spec"].update(restart={"id": "r1"})),
    ("at most one component may have type epp", lambda d: [c.update(type="epp") for c in d["spec"]["components"][1:]]),
    ("component names must be unique case-insensitively", lambda d: _component(d, "decode").update(name="Prefill")),
    ("eppConfig may only be set when type is epp", lambda d: _component(d, "decode").update(eppConfig={"config": "x"})),
    ("minAvailable must be less than or equal to replicas", lambda d: _component(d, "decode").update(minAvailable=3)),
    ("exactly one of configMapRef or config", lambda d: _component(d, "decode").update(type="epp", eppConfig={})),
    (
        "checkpoint.job cannot be set when checkpointRef",
        lambda d: _component(d, "decode").update(experimental={"checkpoint": {"job": {}, "checkpointRef": "c"}}),
    ),
    (
        "extraClientContainers is only supported with mode=IntraPod",
        _gms(mode="InterPod", extraClientContainers=[{"name": "x"}]),
    ),
    ("extraClientPods is only supported with mode=InterPod", _gms(mode="IntraPod", extraClientPods=[{"name": "x"}])),
    ("extraClientPods is reserved for inter-pod GMS", _gms(mode="InterPod", extraClientPods=[{"name": "x"}])),
    (
        "podTemplate backend annotation must be mp or ray",
        lambda d: _component(d, "decode")["podTemplate"].update(
            metadata={"annotations": {"nvidia.com/vllm-distributed-executor-backend": "nccl"}}
        ),
    ),
    ("sidecar containers must specify a non-empty image", _sidecar(image="")),
    (
        "init containers must specify a non-empty image",
        lambda d: _component(d, "decode")["podTemplate"]["spec"].update(initContainers=[{"name": "init"}]),
    ),
    ("exactly one of labelKey or clusterTopologyName", _kv(labelKey="a", clusterTopologyName="b")),
    ("preferredWeight is required when enforcement is preferred", _kv(labelKey="a", enforcement="preferred")),
    ("preferredWeight may only be set when enforcement is preferred", _kv(labelKey="a", preferredWeight=5)),
    ("labelKey prefix must be 253 characters or less", _kv(labelKey="x" * 254 + "/zone")),
]


@pytest.mark.parametrize(("message", "mutate"), CEL_CASES, ids=[m[:40] for m, _ in CEL_CASES])
def test_each_cel_rule_rejects_its_case(message: str, mutate: Callable[[dict[str, Any]], Any]) -> None:
    dgd = render_dgd(make_profile(), parse_topology("1P1-2D1"), study="cel", trial_id="1", api_version=V1BETA1)
    assert cel_violations(dgd) == []
    mutate(dgd)
    found = cel_violations(dgd)
    assert any(message in v for v in found), found


def test_minavailable_is_immutable_on_update_only() -> None:
    """The one transition rule: creating with minAvailable is fine, changing it later is not."""
    dgd = render_dgd(make_profile(), parse_topology("1P1-2D1"), study="cel", trial_id="1", api_version=V1BETA1)
    _component(dgd, "decode").update(minAvailable=1)
    assert cel_violations(dgd) == []
    changed = copy.deepcopy(dgd)
    _component(changed, "decode").update(minAvailable=2)
    assert cel_violations(changed, old=dgd) == [".spec.components[]: minAvailable is immutable after creation"]
    restarted = copy.deepcopy(dgd)
    restarted["spec"]["restart"] = {"id": "r1"}
    assert cel_violations(restarted, old=dgd) == []  # spec.restart may be set after creation


def test_every_rule_has_a_failing_case() -> None:
    covered = {r.message for r in RULES if any(m in r.message for m, _ in CEL_CASES)}
    assert covered | {"minAvailable is immutable after creation"} == {r.message for r in RULES}
