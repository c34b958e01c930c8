"""Router flags read back from and written into a DGD's frontend args; the merge patch touches only the frontend."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from k8s_profiles import DYNAMO_RENDERING, make_profile

from autotune.dynamo.flags import flag_era, replace_router_args, router_args, router_from_args
from autotune.errors import InputError
from autotune.k8s import API_VERSIONS, V1ALPHA1
from autotune.k8s.render import frontend_args_patch, frontend_container, render_dgd
from autotune.topology import RouterSettings, parse_topology

ERAS = [(1, 6), (1, 3), (1, 0), (0, 9)]


@pytest.mark.parametrize("version", ERAS)
def test_router_args_read_back(version: tuple[int, int]) -> None:
    credit = 2.5 if version >= (1, 3) else 1.0
    r = RouterSettings(temperature=0.7, overlap_weight=0.25, overlap_credit=credit)
    assert router_from_args(router_args(version, r)) == r
    assert flag_era(router_args(version, r)) == {(1, 6): (1, 3)}.get(version, version)  # the era's first release


def test_zero_weight_reads_back_with_default_credit() -> None:
    args = router_args((1, 6), RouterSettings(temperature=0.8, overlap_weight=0.0, overlap_credit=3.0))
    assert "--router-kv-overlap-score-credit" in args  # written as the effective credit, 0
    assert router_from_args(args) == RouterSettings(temperature=0.8, overlap_weight=0.0)


def test_replace_keeps_every_other_argument_in_place() -> None:
    old = RouterSettings(temperature=0.0, overlap_weight=1.0)
    new = RouterSettings(temperature=0.7, overlap_weight=0.1)
    args = ["--http-port", "8000", *router_args((1, 6), old), "--namespace", "dyn"]
    out = replace_router_args(args, (1, 6), new)
    assert out == ["--http-port", "8000", *router_args((1, 6), new), "--namespace", "dyn"]
    # --flag=value spellings are replaced too; no router flags at all: the new ones go first
    eq = ["--router-mode=kv", "--x", "--router-temperature=0.5", "--kv-overlap-score-weight=2"]
    assert replace_router_args(eq, (0, 9), new) == [*router_args((0, 9), new), "--x"]
    assert replace_router_args(["--x"], (1, 6), new) == [*router_args((1, 6), new), "--x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--router-temperature", "0.5"], "not 'kv'"),
        (["--router-mode", "round-robin"], "not 'kv'"),
        (["--router-mode", "kv", "--router-temperature", "hot"], "not a number"),
        (["--router-mode", "kv", "--router-temperature"], "has no value"),
        (["--router-mode", "kv", "--router-temperature", "-1"], "must be a finite number >= 0"),
    ],
)
def test_bad_frontend_args_say_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        router_from_args(args)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the apiserver applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _workers(dgd: dict[str, Any]) -> str:
    spec = dgd["spec"]
    if "services" in spec:
        return json.dumps({k: v for k, v in spec["services"].items() if v.get("componentType") != "frontend"})
    return json.dumps([c for c in spec["components"] if c.get("type") != "frontend"])


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_patch_changes_only_the_frontend_args(api_version: str) -> None:
    prof = make_profile(version=DYNAMO_RENDERING[api_version], extra_frontend_args=["--busy-threshold", "0.9"])
    dgd = render_dgd(prof, parse_topology("2P1-1D2@tau=0,omega=1"), study="s", trial_id="1")
    args = frontend_container(dgd)["args"]
    assert router_from_args(args) == RouterSettings() and args[-2:] == ["--busy-threshold", "0.9"]
    preset = RouterSettings(temperature=0.8, overlap_weight=0.1)
    new_args = replace_router_args(args, prof.dynamo.version_tuple, preset)
    patch = frontend_args_patch(dgd, new_args)
    after = merge_patch(dgd, patch)
    assert router_from_args(frontend_container(after)["args"]) == preset
    assert frontend_container(after)["args"][-2:] == ["--busy-threshold", "0.9"]
    assert _workers(after) == _workers(dgd)
    rest = copy.deepcopy(after)
    frontend_container(rest)["args"] = args
    assert rest == dgd  # nothing but the args moved
    assert frontend_container(dgd)["args"] == args  # the patch is built on a copy
    if api_version == V1ALPHA1:
        assert list(patch["spec"]["services"]) == ["Frontend"]  # a map: the patch names the frontend only


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_a_graph_without_one_frontend_is_named(api_version: str) -> None:
    prof = make_profile(version=DYNAMO_RENDERING[api_version])
    dgd = render_dgd(prof, parse_topology("1A1"), study="s", trial_id="1")
    spec = dgd["spec"]
    if api_version == V1ALPHA1:
        spec["services"]["Frontend"]["componentType"] = "main"
    else:
        spec["components"][0]["podTemplate"]["spec"]["containers"][0]["name"] = "sidecar"
    with pytest.raises(InputError, match=dgd["metadata"]["name"]):
        frontend_container(dgd)
