"""Offline checks of a DGD against the real CRD: strict OpenAPI validation and the v1beta1 CEL rules in Python.

kube-apiserver 1.20 silently prunes unknown fields and cannot run CEL ``x-kubernetes-validations`` (alpha in
1.23, GA in 1.29), so the cluster tests see neither. ``strict_errors`` validates like server-side strict field
validation: every object schema with ``properties`` (and no ``x-kubernetes-preserve-unknown-fields``) rejects
other fields. ``cel_violations`` evaluates Python equivalents of the 18 CEL rules of the v1beta1 CRD
(../shared/dynamo/crd-v1beta1/README.md lists them verbatim); ``crd_rules`` reads the rules the CRD file
holds so a test can insist that the two lists match.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from k8s_cluster import load_crd


def _schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    v = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: Any) -> Any:
    """Closed objects: what ``kubectl apply --validate=strict`` rejects as unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            if not out.get("x-kubernetes-preserve-unknown-fields"):
                out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _validator(shared: Path, version: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_strict(_schema(load_crd(shared, version), version)))


def strict_errors(shared: Path, version: str, obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` breaks the ``version`` schema of the shared CRD, unknown fields included."""
    errors = _validator(shared, version).iter_errors(obj)
    return sorted(f"{'.'.join(str(p) for p in e.absolute_path) or '.'}: {e.message}" for e in errors)


# ---- CEL rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry: where it sits, its message, and its meaning in Python.

    ``check(self, old)`` gets the value at ``path`` and, for transition rules, the old value (None on create).
    """

    path: str
    message: str
    check: Callable[[Any, Any], bool]
    old_self: str = ""  # "": no oldSelf; "required": update of an existing value only; "optional": always


def _has(d: Any, key: str) -> bool:
    return isinstance(d, dict) and key in d


def _kv_exactly_one(s: Any, old: Any) -> bool:
    return _has(s, "labelKey") != _has(s, "clusterTopologyName")


def _min_available(s: Any, old: Any) -> bool:
    if not _has(s, "minAvailable") or s.get("replicas", None) == 0:
        return True
    return bool(s["minAvailable"] <= s.get("replicas", 1))


def _min_available_immutable(s: Any, old: Any) -> bool:
    return not _has(old, "minAvailable") or (_has(s, "minAvailable") and s["minAvailable"] == old["minAvailable"])


def _names_unique(s: Any, old: Any) -> bool:
    names = [c["name"].lower() for c in s if _has(c, "name")]
    return len(names) == len(set(names))


_BACKEND_ANN = "nvidia.com/vllm-distributed-executor-backend"
_GMS = ".spec.components[].experimental.gpuMemoryService"
_KV = ".spec.experimental.kvTransferPolicy"

RULES = [
    Rule(
        ".spec",
        "spec.restart must be unset on create; set spec.restart.id after creation to request a restart",
        lambda s, old: old is not None or not _has(s, "restart"),
        old_self="optional",
    ),
    Rule(
        ".spec.components",
        "at most one component may have type epp",
        lambda s, old: sum(1 for c in s if c.get("type") == "epp") <= 1,
    ),
    Rule(".spec.components", "component names must be unique case-insensitively", _names_unique),
    Rule(
        ".spec.components[]",
        "eppConfig may only be set when type is epp",
        lambda s, old: not _has(s, "eppConfig") or s.get("type") == "epp",
    ),
    Rule(
        ".spec.components[]", "minAvailable must be less than or equal to replicas unless replicas is 0", _min_available
    ),
    Rule(
        ".spec.components[]", "minAvailable is immutable after creation", _min_available_immutable, old_self="required"
    ),
    Rule(
        ".spec.components[].eppConfig",
        "exactly one of configMapRef or config must be specified",
        lambda s, old: _has(s, "configMapRef") != _has(s, "config"),
    ),
    Rule(
        ".spec.components[].experimental.checkpoint",
        "checkpoint.job cannot be set when checkpointRef is specified",
        lambda s, old: not _has(s, "job") or not _has(s, "checkpointRef") or len(s["checkpointRef"]) == 0,
    ),
    Rule(
        _GMS,
        "extraClientContainers is only supported with mode=IntraPod",
        lambda s, old: not s.get("extraClientContainers") or s.get("mode") == "IntraPod",
    ),
    Rule(
        _GMS,
        "extraClientPods is only supported with mode=InterPod",
        lambda s, old: not s.get("extraClientPods") or s.get("mode") == "InterPod",
    ),
    Rule(
        _GMS,
        "extraClientPods is reserved for inter-pod GMS and is not implemented yet",
        lambda s, old: not s.get("extraClientPods"),
    ),
    Rule(
        ".spec.components[].podTemplate.metadata.annotations",
        "podTemplate backend annotation must be mp or ray, case-insensitively",
        lambda s, old: _BACKEND_ANN not in s or s[_BACKEND_ANN].lower() in ("mp", "ray"),
    ),
    Rule(
        ".spec.components[].podTemplate.spec.containers[]",
        "sidecar containers must specify a non-empty image",
        lambda s, old: s.get("name") == "main" or bool(s.get("image")),
    ),
    Rule(
        ".spec.components[].podTemplate.spec.initContainers[]",
        "init containers must specify a non-empty image",
        lambda s, old: bool(s.get("image")),
    ),
    Rule(_KV, "exactly one of labelKey or clusterTopologyName is required", _kv_exactly_one),
    Rule(
        _KV,
        "preferredWeight is required when enforcement is preferred",
        lambda s, old: s.get("enforcement") != "preferred" or _has(s, "preferredWeight"),
    ),
    Rule(
        _KV,
        "preferredWeight may only be set when enforcement is preferred",
        lambda s, old: not _has(s, "preferredWeight") or s.get("enforcement") == "preferred",
    ),
    Rule(
        _KV + ".labelKey",
        "labelKey prefix must be 253 characters or less",
        lambda s, old: "/" not in s or len(s.split("/")[0]) <= 253,
    ),
]


def _segments(path: str) -> list[str]:
    return [p for p in path.replace("[]", ".[]").split(".") if p]


def _walk(value: Any, old: Any, segs: list[str]) -> Iterator[tuple[Any, Any]]:
    """(value, old value) pairs at the path; list items are correlated by ``name`` (the list-map key)."""
    if not segs:
        yield value, old
        return
    head, rest = segs[0], segs[1:]
    if head == "[]":
        if not isinstance(value, list):
            return
        olds = {o.get("name"): o for o in old or [] if isinstance(o, dict)}
        for item in value:
            yield from _walk(item, olds.get(item.get("name")) if isinstance(item, dict) else None, rest)
    elif isinstance(value, dict) and head in value:
        yield from _walk(value[head], old.get(head) if isinstance(old, dict) else None, rest)


def cel_violations(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Messages of the v1beta1 CEL rules ``obj`` breaks; ``old`` is the stored object for an update."""
    out = []
    for rule in RULES:
        for value, before in _walk(obj, old, _segments(rule.path)):
            if rule.old_self == "required" and before is None:
                continue  # on create, or a new list item: a transition rule does not run
            if not rule.check(value, before):
                out.append(f"{rule.path}: {rule.message}")
    return out


def crd_rules(shared: Path, version: str = "v1beta1") -> set[tuple[str, str, str]]:
    """(path, rule, message) of every CEL rule in the shared CRD's ``version`` schema, as the file has them."""
    found: set[tuple[str, str, str]] = set()

    def walk(s: Any, path: str) -> None:
        if not isinstance(s, dict):
            return
        for r in s.get("x-kubernetes-validations") or []:
            found.add((path or ".", r["rule"], r["message"]))
        for k, v in (s.get("properties") or {}).items():
            walk(v, f"{path}.{k}")
        if isinstance(s.get("items"), dict):
            walk(s["items"], f"{path}[]")
        if isinstance(s.get("additionalProperties"), dict):
            walk(s["additionalProperties"], f"{path}{{}}")

    walk(copy.deepcopy(_schema(load_crd(shared, version), version)), "")
    return found
