"""Malformed and inconsistent profiles: each gives a one-line ``ProfileError`` naming the file, the
field path and what is wrong; the CLI turns it into exit code 2 and one line on stderr."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from autotune.cli import main
from autotune.errors import EXIT_BAD_INPUT, ProfileError
from autotune.profile import load_profile

VALID: dict[str, Any] = {
    "name": "t",
    "cluster": {"nodes": 1, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {
        "templates": 5,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [4, 8],
        "requests_per_point": 60,
        "warmup_requests": 5,
        "cooldown_requests": 5,
    },
    "baselines": ["1P4-1D4"],
}


def _set(path: str, value: Any) -> Any:
    """A modifier that sets ``a.b.c`` in a copy of VALID (``...`` deletes the key)."""

    def mod(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        if value is ...:
            del d[last]
        else:
            d[last] = value

    return mod


# (id, modifier or raw YAML text, field path the message names, what-is-wrong fragment)
CASES: list[tuple[str, Any, str, str]] = [
    ("unknown-gpu", _set("cluster.gpu", "X100"), "cluster.gpu", "unknown gpu 'X100'"),
    ("unknown-model", _set("model.name", "Llama-9-1T"), "model", "unknown model 'Llama-9-1T'"),
    ("bad-weight-dtype", _set("model.weight_dtype", "int3"), "model.weight_dtype", "'fp8'"),
    ("bad-kv-dtype", _set("model.kv_dtype", 8), "model.kv_dtype", "(got 8)"),
    ("negative-nodes", _set("cluster.nodes", -1), "cluster.nodes", "greater than 0 (got -1)"),
    ("non-integer-nodes", _set("cluster.nodes", "three"), "cluster.nodes", "valid integer"),
    ("too-many-gpus-per-node", _set("cluster.gpus_per_node", 100), "cluster.gpus_per_node", "less than or equal to 72"),
    ("unknown-top-field", _set("clustr", {"nodes": 1}), "clustr", "unknown field"),
    ("unknown-nested-field", _set("engine.max_seqs", 64), "engine.max_seqs", "unknown field"),
    (
        "unknown-gpu-override",
        _set("cluster.gpu", {"base": "B200", "hbm_gib": 170}),
        "cluster.gpu.hbm_gib",
        "unknown field",
    ),
    ("missing-cluster", _set("cluster", ...), "cluster", "required field is missing"),
    ("missing-name", _set("name", ...), "name", "required field is missing"),
    ("missing-gpus-per-node", _set("cluster.gpus_per_node", ...), "cluster.gpus_per_node", "required field is missing"),
    ("gpu-not-name-or-mapping", _set("cluster.gpu", 42), "cluster.gpu", "expected a catalog name or a mapping"),
    ("cluster-not-mapping", _set("cluster", "B200"), "cluster", "valid dictionary"),
    ("bad-yaml", "name: t\ncluster: {nodes: 1\nmodel: x\n", "line 3", "expected ',' or '}'"),
    ("non-mapping", "- name: t\n- cluster: 1\n", "", "a profile must be a mapping, got list"),
    ("empty-file", "", "", "a profile must be a mapping, got NoneType"),
    (
        "prefix-longer-than-input",
        _set("workload.prefix_tokens", 200),
        "workload.prefix_tokens",
        "exceeds the shortest input (128)",
    ),
    (
        "target-not-in-grid",
        _set("search", {"operating_point": "target", "target_concurrency": 128}),
        "search.target_concurrency",
        "not in workload.concurrency",
    ),
    ("target-without-concurrency", _set("search", {"operating_point": "target"}), "search", "needs target_concurrency"),
    (
        "temperature-bounds-inverted",
        _set("search", {"temperature": [1.0, 0.0]}),
        "search",
        "temperature: lower bound 1.0 exceeds upper bound 0.0",
    ),
    (
        "omega-bounds-inverted",
        _set("search", {"overlap_weight": [2.0, 0.5]}),
        "search",
        "overlap_weight: lower bound 2.0 exceeds upper bound 0.5",
    ),
    (
        "unknown-distribution",
        _set("workload.input_tokens", {"dist": "poisson", "value": 3}),
        "workload.input_tokens",
        "'poisson'",
    ),
    (
        "distribution-without-tag",
        _set("workload.output_tokens", {"value": 3}),
        "workload.output_tokens",
        "discriminator 'dist'",
    ),
    (
        "uniform-min-over-max",
        _set("workload.output_tokens", {"dist": "uniform", "min": 50, "max": 10}),
        "workload.output_tokens",
        "min (50) exceeds max (10)",
    ),
    (
        "normal-min-over-max",
        _set("workload.output_tokens", {"dist": "normal", "mean": 30, "std": 5, "min": 50, "max": 10}),
        "workload.output_tokens",
        "min (50) exceeds max (10)",
    ),
    (
        "concurrency-not-increasing",
        _set("workload.concurrency", [8, 4]),
        "workload",
        "concurrency must be strictly increasing",
    ),
    ("concurrency-empty", _set("workload.concurrency", []), "workload.concurrency", "at least 1 item"),
    ("no-measured-requests", _set("workload.warmup_requests", 55), "workload", "leave no measured requests"),
    ("open-loop-without-rate", _set("workload.arrival", "open"), "workload", "needs rate_rps"),
    (
        "spike-on-closed-loop",
        _set("workload.spike", {"start_s": 1, "duration_s": 2, "peak_rate_rps": 9}),
        "workload",
        "needs arrival 'open'",
    ),
    (
        "memory-fraction-over-one",
        _set("engine.gpu_memory_fraction", 1.5),
        "engine.gpu_memory_fraction",
        "less than or equal to 1",
    ),
    (
        "batched-tokens-below-block",
        _set("engine.max_num_batched_tokens", 16),
        "engine.max_num_batched_tokens",
        "smaller than engine.block_size",
    ),
    ("heads-not-multiple-of-kv-heads", _set("model.heads", 60), "model", "heads (60) must be a multiple of kv_heads"),
    ("negative-model-layers", _set("model.layers", -80), "model.layers", "greater than 0"),
    (
        "infinite-bandwidth",
        _set("cluster.gpu", {"base": "B200", "hbm_bw_tb_s": float("inf")}),
        "cluster.gpu.hbm_bw_tb_s",
        "finite number",
    ),
    ("bad-dynamo-version", _set("dynamo.version", "latest"), "dynamo.version", "(got 'latest')"),
    ("bad-framework", _set("dynamo.framework", "tensorrt"), "dynamo.framework", "(got 'tensorrt')"),
    (
        "jitter-over-overhead",
        _set("dynamo.frontend_jitter_ms", 9.0),
        "dynamo",
        "frontend_jitter_ms (9.0) must not exceed frontend_overhead_ms (4.5)",
    ),
    ("negative-slo", _set("slo.ttft_p99_ms", -5), "slo.ttft_p99_ms", "greater than 0 (got -5)"),
    ("bad-baseline-topology", _set("baselines", ["1P4-1D4", "1X4"]), "baselines[1]", "cannot parse '1X4'"),
    ("bad-baseline-router", _set("baselines", ["1P4-1D4@tau=-1"]), "baselines[0]", "temperature must be"),
    ("extends-not-a-name", _set("extends", 3), "extends", "expected a profile name or path"),
    ("extends-missing", _set("extends", "no-such-profile"), "extends", "'no-such-profile' not found"),
    ("seed-negative", _set("seed", -5), "seed", "greater than or equal to 0 (got -5)"),
    ("seed-over-2-to-32", _set("seed", 2**32), "seed", "less than or equal to 4294967295"),
    ("nodes-huge", _set("cluster.nodes", 10**11), "cluster.nodes", "less than or equal to 4096"),
    ("temperature-huge", _set("search", {"temperature": [0, 1e308]}), "search.temperature", "less than or equal"),
    (
        "output-beyond-context",
        _set("workload.output_tokens", {"dist": "fixed", "value": 200000}),
        "workload",
        "exceeds model.max_context_tokens (131072)",
    ),
    (
        "requests-below-concurrency",
        _set("workload.concurrency", [4, 8, 64]),
        "workload.requests_per_point",
        "60 requests per point cannot measure concurrency 64",
    ),
    ("search-concurrency-empty", _set("search", {"concurrency": []}), "search.concurrency", "at least 1 item"),
    (
        "credit-range-on-old-dynamo",
        lambda d: d.update(dynamo={"version": "1.2.0"}, search={"operating_point": "grid", "overlap_credit": [0, 2]}),
        "search.overlap_credit",
        "needs Dynamo 1.3",
    ),
    (
        "baseline-credit-on-old-dynamo",
        lambda d: d.update(dynamo={"version": "0.9.0"}, baselines=["1P4-1D4@credit=2"]),
        "baselines[0]",
        "needs Dynamo 1.3",
    ),
    ("duplicate-key", "name: t\nname: u\n", "line 2", "duplicate key 'name'"),
]


def _write(tmp_path: Path, spec: Any, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    if isinstance(spec, str):
        path.write_text(spec)
    else:
        data = copy.deepcopy(VALID)
        spec(data)
        path.write_text(yaml.safe_dump(data))
    return path


def test_valid_base_loads(tmp_path: Path) -> None:
    """The base every case corrupts is itself valid, so each failure below is the corruption's."""
    prof = load_profile(_write(tmp_path, lambda d: None))
    assert prof.model.name == "Llama-3.1-70B" and prof.cluster.gpu.name == "B200"


@pytest.mark.parametrize("spec,field,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_profile(tmp_path: Path, spec: Any, field: str, fragment: str) -> None:
    path = _write(tmp_path, spec)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    assert field in msg, msg
    assert fragment in msg, msg
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_cases_are_distinct() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 15


def test_extends_cycle(tmp_path: Path) -> None:
    base = copy.deepcopy(VALID)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**base, "extends": "b"}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"extends": "a", "name": "b"}))
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "a.yaml")
    msg = str(info.value)
    assert "extends" in msg and "cycle" in msg and "\n" not in msg


def test_extends_self(tmp_path: Path) -> None:
    (tmp_path / "me.yaml").write_text(yaml.safe_dump({**VALID, "extends": "me"}))
    with pytest.raises(ProfileError, match=r"me\.yaml: extends: cycle"):
        load_profile(tmp_path / "me.yaml")


def test_extends_merges_and_error_names_child(tmp_path: Path) -> None:
    """A child overrides one nested field of its parent; a bad override names the child file."""
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump(VALID))
    (tmp_path / "child.yaml").write_text("extends: parent\nname: c\nengine: {block_size: 32}\n")
    prof = load_profile(tmp_path / "child.yaml")
    assert prof.name == "c" and prof.engine.block_size == 32 and prof.cluster.nodes == 1
    (tmp_path / "bad_child.yaml").write_text("extends: parent\nengine: {block_size: -32}\n")
    with pytest.raises(ProfileError, match=r"bad_child\.yaml: engine\.block_size: .*greater than 0"):
        load_profile(tmp_path / "bad_child.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="file not found"):
        load_profile(tmp_path / "nope.yaml")


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code), out, err


@pytest.mark.parametrize("case", ["unknown-gpu", "bad-yaml", "prefix-longer-than-input", "bad-baseline-topology"])
def test_cli_bad_profile_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    spec = next(c[1] for c in CASES if c[0] == case)
    path = _write(tmp_path, spec)
    code, out, err = _run_main(["simulate", "--profile", str(path)], capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("autotune: error: ") and str(path) in lines[0]


@pytest.mark.parametrize(
    "flags,fragment",
    [
        (["--topology", "1P4-xD4"], "--topology: cannot parse"),
        (["--topology", "1P4-1D4@tau=abc"], "--topology: tau must be a number"),
        (["--concurrency", "4,-8"], "--concurrency: '-8' is not a positive integer"),
        (["--perf-model", "magic"], "--perf-model: unknown perf model 'magic'"),
    ],
)
def test_cli_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    path = _write(tmp_path, lambda d: None, "ok.yaml")
    code, out, err = _run_main(["simulate", "--profile", str(path), *flags], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_cli_subprocess_no_traceback(tmp_path: Path) -> None:
    """The real entry point, in a fresh interpreter: exit 2, one stderr line, no traceback."""
    path = _write(tmp_path, _set("model.weight_dtype", "int3"))
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "simulate", "--profile", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: model.weight_dtype:" in lines[0], proc.stderr
