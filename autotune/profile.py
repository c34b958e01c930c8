"""Profiles: the cluster, model, Dynamo deployment, workload, SLOs and search space of one study.

A profile is YAML validated by pydantic, so every error names its field path. Catalog entries are
resolved here (``gpu: B200`` becomes the full GPU spec) and a profile may ``extends:`` another
one, so the shipped paper setups share one base and differ in a few lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from autotune import catalog
from autotune.controller_spec import ControllerEvalSpec
from autotune.errors import InputError, ProfileError
from autotune.model_arch import derive_params, expand_hf_config, is_inline
from autotune.profile_schema import (  # noqa: F401 - re-exported: the sections are part of the profile API
    DTYPE_BYTES,
    ClusterSpec,
    Dtype,
    DynamoSpec,
    EngineSpec,
    FixedDist,
    GpuSpec,
    KvTransferSpec,
    LengthDist,
    MeasurementSpec,
    ModelSpec,
    NonNeg,
    NormalDist,
    PerfSpec,
    Pos,
    PosInt,
    SearchSpace,
    SecretRef,
    Seed,
    SloSpec,
    SpikeSpec,
    UniformDist,
    WorkloadSpec,
    _Strict,
)
from autotune.topology import CREDIT_MIN_VERSION, Topology, check_router_version, parse_topology, shorten
from autotune.traces.trace import load_trace


def shipped_profiles_dir() -> Path:
    """Where the shipped profiles are: ``autotune/profiles/`` inside an installed package (a wheel or
    ``pip install .`` puts the repository's top-level ``profiles/`` there as package data), else the
    ``profiles/`` beside the package in a source checkout (an editable install, or ``PYTHONPATH``)."""
    package = Path(str(resources.files("autotune")))
    installed = package / "profiles"
    return installed if installed.is_dir() else package.parent / "profiles"


PROFILES_DIR = shipped_profiles_dir()


# a profile's name names its results directory and study: one path component, no traversal
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
MAX_PROFILE_BYTES = 1 << 20  # a profile (or a parent it extends) larger than this is refused


class Profile(_Strict):
    name: str
    description: str = ""
    cluster: ClusterSpec
    model: ModelSpec
    dynamo: DynamoSpec = DynamoSpec()
    engine: EngineSpec = EngineSpec()
    kv_transfer: KvTransferSpec = KvTransferSpec()
    perf: PerfSpec = PerfSpec()  # roofline constants measured for this deployment (autotune calibrate)
    workload: WorkloadSpec = WorkloadSpec()
    measurement: MeasurementSpec = MeasurementSpec()
    slo: SloSpec = SloSpec()
    search: SearchSpace = SearchSpace(operating_point="grid")
    controller_eval: ControllerEvalSpec = ControllerEvalSpec()
    baselines: list[str] = Field(default_factory=list)  # topology strings, e.g. the paper's 1P4-5D4
    seed: Seed = 0
    source: str = Field(default="<memory>", exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError(
                f"must be 1-63 letters, digits, '.', '_' or '-' starting with a letter or digit "
                f"(it names the results directory), got {v!r}"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> Profile:
        w = self.workload
        if w.trace is None and w.prefix_tokens > w.min_input_tokens():
            raise ValueError(
                f"workload.prefix_tokens ({w.prefix_tokens}) exceeds the shortest input ({w.min_input_tokens()})"
            )
        if w.fixed_tokens > w.prefix_tokens and w.fixed_tokens >= w.min_input_tokens():
            raise ValueError(
                f"workload.chat_template_tokens_before/after + prefix_tokens ({w.fixed_tokens}) leave no "
                f"tokens of its own to the shortest input ({w.min_input_tokens()})"
            )
        tc = self.search.target_concurrency
        if self.search.operating_point == "target" and tc not in w.concurrency:
            raise ValueError(f"search.target_concurrency ({tc}) is not in workload.concurrency {w.concurrency}")
        if self.engine.max_num_batched_tokens < self.engine.block_size:
            raise ValueError("engine.max_num_batched_tokens is smaller than engine.block_size")
        ctx = self.model.max_context_tokens
        if ctx is not None and w.max_request_tokens() > ctx:
            raise ValueError(
                f"workload: the longest request ({w.max_request_tokens()} tokens, input + output) exceeds "
                f"model.max_context_tokens ({ctx})"
            )
        why = w.too_few_requests(w.requests_per_point, max(w.concurrency))
        if why:
            raise ValueError(f"workload.requests_per_point: {why}")
        s = self.search
        # unset: each search point starts at measurement.start_requests (>= 4 per client) and grows
        why = (
            w.too_few_requests(s.requests_per_point, max(s.concurrency or w.concurrency))
            if s.requests_per_point
            else ""
        )
        if why:
            raise ValueError(f"search.requests_per_point: {why}")
        if s.overlap_credit is not None and self.dynamo.version_tuple < CREDIT_MIN_VERSION:
            raise ValueError(
                f"search.overlap_credit needs Dynamo 1.3 or newer (dynamo.version is {self.dynamo.version})"
            )
        for i, text in enumerate(self.baselines):
            try:
                profile_topology(self, text, flag=f"baselines[{i}]")
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return self

    def digest(self) -> str:
        """Stable hash of the resolved profile, and of the trace file it replays: provenance for every result."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        if self.workload.trace is not None:
            blob += load_trace(self.workload.trace).sha256.encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def resolved_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def profile_topology(profile: Profile, text: str, flag: str = "--topology") -> Topology:
    """A topology string checked against the profile's Dynamo version: the one parser every command uses
    (simulate, validate, dgd, the study's baselines), so no command accepts what another refuses."""
    topo = parse_topology(text, flag)
    check_router_version(topo.router, profile.dynamo.version_tuple, f"{flag}: {shorten(text.strip())}")
    return topo


def _resolve_catalog(data: dict[str, Any], key: str, kind: str, src: str, path: str) -> None:
    """Replace ``key: NAME`` or ``key: {base: NAME, ...}`` by the catalog entry plus overrides."""
    entry = data.get(key)
    if entry is None:
        return
    if isinstance(entry, str):
        entry = {"base": entry}
    if not isinstance(entry, dict):
        raise ProfileError(src, f"{path}.{key}", f"expected a catalog name or a mapping, got {type(entry).__name__}")
    entry = dict(entry)
    table = catalog.load(kind)
    if key == "model" and is_inline(entry) and entry.get("name") not in table:
        data[key] = derive_params(entry)  # a model outside the catalog, by its architecture (model_arch)
        return
    base = entry.pop("base", None) or (entry.get("name") if key == "model" else None)
    if base is not None:
        if base not in table:
            hint = "; or describe it by its architecture (layers, hidden, ...) or hf_config" if key == "model" else ""
            raise ProfileError(
                src,
                f"{path}.{key}".lstrip("."),
                f"unknown {kind[:-1]} {base!r} (known: {', '.join(sorted(table))}){hint}",
            )
        entry = {**table[base], "name": base, **entry}
    data[key] = entry


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, mapping by mapping; a length distribution of another kind
    (``dist: uniform`` over ``dist: fixed``) replaces the parent's instead of merging into it."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        if isinstance(v, dict) and isinstance(old, dict) and v.get("dist", old.get("dist")) == old.get("dist"):
            out[k] = _deep_merge(old, v)
        else:
            out[k] = v
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen and key != "<<"
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_text(path: Path, display: str) -> str:
    """A regular file of at most ``MAX_PROFILE_BYTES`` of UTF-8: never a device, FIFO or directory
    (``extends: /dev/zero`` would read forever)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ProfileError(display, "", "not a regular file")
        if st.st_size > MAX_PROFILE_BYTES:
            raise ProfileError(display, "", f"larger than {MAX_PROFILE_BYTES // 1024} KiB; not a profile")
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError:
        raise ProfileError(display, "", "file not found") from None
    except OSError as exc:
        raise ProfileError(display, "", f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(display, "", f"larger than {MAX_PROFILE_BYTES // 1024} KiB; not a profile")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(display, "", f"not UTF-8 text (byte {exc.start})") from None


def _read_yaml(path: Path, display: str) -> dict[str, Any]:
    text = _read_text(path, display)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ProfileError(display, where, str(problem)) from None
    if not isinstance(data, dict):
        raise ProfileError(display, "", f"a profile must be a mapping, got {type(data).__name__}")
    return data


def find_profile(ref: str) -> Path:
    """A profile by path, or by name from ``$AUTOTUNE_PROFILES_DIR`` or the shipped ``profiles/``."""
    p = Path(ref)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in ref:
        return p
    for d in (os.environ.get("AUTOTUNE_PROFILES_DIR"), PROFILES_DIR):
        if d and (Path(d) / f"{ref}.yaml").exists():
            return Path(d) / f"{ref}.yaml"
    return PROFILES_DIR / f"{ref}.yaml"


def _anchor_trace(data: dict[str, Any], path: Path) -> None:
    """A ``workload.trace.path`` is relative to the profile file that names it (a parent's to the parent)."""
    w = data.get("workload")
    trace = w.get("trace") if isinstance(w, dict) else None
    if isinstance(w, dict) and isinstance(trace, dict) and isinstance(trace.get("path"), str) and trace["path"]:
        data["workload"] = {
            **w,
            "trace": {**trace, "path": str(path.parent.absolute() / Path(trace["path"]).expanduser())},
        }


def _load_raw(path: Path, display: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    data = _read_yaml(path, display)
    _anchor_trace(data, path)
    expand_hf_config(data, path.parent, display)  # relative to the file that names it, before any merge
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ProfileError(display, "extends", "expected a profile name or path")
    fname = parent if parent.endswith((".yaml", ".yml")) else f"{parent}.yaml"
    ppath = path.parent / fname
    if not ppath.exists():
        ppath = find_profile(parent)
    if ppath.resolve() in seen:
        raise ProfileError(display, "extends", f"cycle through {parent!r}")
    if not ppath.exists():
        raise ProfileError(display, "extends", f"profile {parent!r} not found")
    if not ppath.is_file():
        raise ProfileError(display, "extends", f"{parent!r} is not a regular file")
    base = _load_raw(ppath, str(ppath), seen + (path.resolve(),))
    return _deep_merge(base, data)


def profile_from_dict(data: dict[str, Any], source: str = "<memory>") -> Profile:
    """Validate a raw mapping; raises ``ProfileError`` naming the first bad field."""
    data = dict(data)
    expand_hf_config(data, Path.cwd(), source)  # a mapping built in memory: relative to the working directory
    cluster = data.get("cluster")
    if isinstance(cluster, dict):
        cluster = dict(cluster)
        _resolve_catalog(cluster, "gpu", "gpus", source, "cluster")
        data["cluster"] = cluster
    _resolve_catalog(data, "model", "models", source, "")
    data.pop("source", None)
    try:
        return Profile.model_validate({**data, "source": source})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-after", "tagged-union")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        raise ProfileError(source, loc.lstrip("."), msg) from None


def load_profile(ref: str | Path) -> Profile:
    """Load a profile by path or shipped name."""
    path = find_profile(str(ref))
    return profile_from_dict(_load_raw(path, str(ref)), str(ref))
