"""A corpus of malformed inputs (profiles, topology strings, flags) across the commands.

Every case must end with the documented exit code (2 bad input, 3 infeasible), exactly one non-empty
line on stderr that names the file, field or flag, nothing on stdout, no traceback, and no change in
a results directory it was given. Most cases run the CLI in-process; a few go through the real
entry point (``python3 -m autotune``) in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotune.cli import main
from tests.conftest import ROOT

TINY = """\
extends: paper-70b-1p5d
name: tiny
workload: {concurrency: [4, 8], requests_per_point: 60, warmup_requests: 5, cooldown_requests: 5}
search: {trials: 2, concurrency: [4, 8], requests_per_point: 40, target_concurrency: 8, min_gpus: 4}
"""


def arch(**over: object) -> str:
    """An inline model (not in the catalog) as a YAML flow mapping, with fields ``over``-ridden."""
    fields = {"name": "my-model", "layers": 4, "hidden": 512, "heads": 8, "kv_heads": 2, "head_dim": 64}
    fields.update({"ffn": 1024, "vocab": 1000, **over})
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


HUGE = "1" * 10_000  # a 10,000-digit number: past Python's 4,300-digit int() limit

# (id, YAML lines over the tiny profile (or "extends: X" first for another base), field the line must name)
PROFILE_CASES: list[tuple[str, str, str]] = [
    ("nodes-huge", "cluster: {nodes: 100000000000}", "cluster.nodes"),
    ("nodes-zero", "cluster: {nodes: 0}", "cluster.nodes"),
    ("gpus-per-node-huge", "cluster: {gpus_per_node: 1000}", "cluster.gpus_per_node"),
    ("seed-negative", "seed: -5", "seed"),
    ("seed-2-to-32", "seed: 4294967296", "seed"),
    ("seed-fractional", "seed: 1.5", "seed"),
    ("seed-text", "seed: abc", "seed"),
    ("temperature-1e308", "search: {temperature: [0, 1e308]}", "search.temperature"),
    ("omega-huge", "search: {overlap_weight: [0, 1000000]}", "search.overlap_weight"),
    ("temperature-negative", "search: {temperature: [-1, 1]}", "search.temperature"),
    ("temperature-inf", "search: {temperature: [0, .inf]}", "search.temperature"),
    ("credit-range-on-0.9", "search: {overlap_credit: [0, 2]}", "search.overlap_credit"),
    ("router-step-tiny", "search: {router_step: 1.0e-300}", "search.router_step"),
    ("trials-huge", "search: {trials: 1000000000}", "search.trials"),
    ("max-decode-workers-huge", "search: {max_decode_workers: 100000000}", "search.max_decode_workers"),
    ("search-concurrency-empty", "search: {concurrency: []}", "search.concurrency"),
    ("search-concurrency-unsorted", "search: {concurrency: [8, 4]}", "search"),
    ("search-requests-below-concurrency", "search: {requests_per_point: 6}", "search.requests_per_point"),
    ("workload-concurrency-empty", "workload: {concurrency: []}", "workload.concurrency"),
    ("workload-concurrency-huge", "workload: {concurrency: [4, 8, 10000000000]}", "workload.concurrency"),
    (
        "workload-requests-below-concurrency",
        "workload: {concurrency: [4, 8, 64]}\nsearch: {concurrency: [4, 8]}",
        "workload.requests_per_point",
    ),
    ("requests-huge", "workload: {requests_per_point: 1000000000000}", "workload.requests_per_point"),
    ("templates-huge", "workload: {templates: 1000000000000}", "workload.templates"),
    ("prefix-huge", "workload: {prefix_tokens: 100000000000}", "workload.prefix_tokens"),
    ("output-beyond-context", "workload: {output_tokens: {dist: fixed, value: 200000}}", "max_context_tokens"),
    (
        "uniform-beyond-context",
        "workload: {input_tokens: {dist: uniform, min: 128, max: 131000}}",
        "max_context_tokens",
    ),
    ("uniform-max-huge", "workload: {input_tokens: {dist: uniform, min: 128, max: 99999999999}}", "input_tokens"),
    ("normal-mean-1e308", "workload: {output_tokens: {dist: normal, mean: 1e308, std: 1}}", "output_tokens"),
    (
        "context-340b",
        "extends: paper-340b-1p2d\nname: c\nworkload: {input_tokens: {dist: fixed, value: 4000}}",
        "max_context_tokens (4096)",
    ),
    ("context-negative", "model: {max_context_tokens: -1}", "model.max_context_tokens"),
    ("max-num-seqs-huge", "engine: {max_num_seqs: 1000000000000}", "engine.max_num_seqs"),
    ("block-size-huge", "engine: {block_size: 1000000000}", "engine.block_size"),
    ("duplicate-yaml-key", "search: {trials: 2}\nsearch: {trials: 3}", "line 4: duplicate key 'search'"),
    ("duplicate-nested-yaml-key", "cluster: {nodes: 1, nodes: 2}", "line 3: duplicate key 'nodes'"),
    ("baseline-credit-on-0.9", 'baselines: ["1P4-1D4@credit=2"]', "baselines[0]"),
    ("baseline-duplicate-key", 'baselines: ["1P4-1D4@tau=1,tau=2"]', "baselines[0]"),
    ("baseline-huge-count", f'baselines: ["{HUGE}P4-1D4"]', "baselines[0]"),
    ("baseline-tau-1e308", 'baselines: ["1P4-1D4@tau=1e308"]', "baselines[0]"),
    # a model outside the catalog (inline or from a config.json beside the profile; see the env fixture)
    ("model-unknown-no-architecture", "model: {name: my-model}", "model: unknown model 'my-model'"),
    ("model-inline-negative-layers", f"model: {arch(layers=-2)}", "model.layers"),
    ("model-inline-heads-not-dividing", f"model: {arch(heads=9)}", "heads (9) must be a multiple of kv_heads"),
    ("model-inline-fractional-hidden", f"model: {arch(hidden=40.5)}", "model.hidden"),
    ("hf-config-missing", "model: {name: my-model, hf_config: absent.json}", "model.hf_config: "),
    ("hf-config-bad-json", "model: {name: my-model, hf_config: broken.json}", "broken.json: bad JSON at line 2"),
    ("hf-config-not-object", "model: {name: my-model, hf_config: list.json}", "list.json: expected a JSON object"),
    ("hf-config-negative", "model: {name: my-model, hf_config: negative.json}", "num_hidden_layers must be a positive"),
    ("hf-config-heads-not-dividing", "model: {name: my-model, hf_config: odd.json}", "multiple of kv_heads"),
    ("hf-config-not-a-path", "model: {name: my-model, hf_config: [1]}", "model.hf_config: expected the path"),
    ("hf-config-and-base", "model: {base: Llama-3.1-8B, hf_config: odd.json}", "either base"),
    # the deployment's own figures
    ("num-gpu-blocks-zero", "engine: {num_gpu_blocks_override: 0}", "engine.num_gpu_blocks_override"),
    ("kv-bandwidth-negative", "kv_transfer: {bandwidth_gb_s: -1}", "kv_transfer.bandwidth_gb_s"),
    ("kv-bytes-per-token-zero", "kv_transfer: {bytes_per_token: 0}", "kv_transfer.bytes_per_token"),
    ("tokenize-cost-negative", "dynamo: {frontend_tokenize_token_us: -1}", "dynamo.frontend_tokenize_token_us"),
    ("think-time-negative", "workload: {think_time: {dist: fixed, value_ms: -1}}", "workload.think_time"),
    ("think-time-reversed", "workload: {think_time: {dist: uniform, min_ms: 5, max_ms: 1}}", "min_ms (5.0) exceeds"),
    (
        "think-time-open-loop",
        "workload: {arrival: open, rate_rps: 5, think_time: {dist: exponential, mean_ms: 10}}",
        "think_time is a closed-loop",
    ),
    ("chat-template-too-long", "workload: {chat_template_tokens_before: 32}", "chat_template_tokens_before/after"),
]

S = ["simulate", "-p", "{p}", "-n", "20", "-c", "1"]  # simulate on the tiny profile
# (id, argv ({p} the tiny profile, {r} an existing results dir, {new} a path that must stay absent),
#  exit code, fragment the line must contain: the flag, field or file)
FLAG_CASES: list[tuple[str, list[str], int, str]] = [
    # topology strings
    ("topo-10000-digit-count", [*S, "-t", f"{HUGE}A4"], 2, "--topology: aggregated workers must be at most"),
    ("topo-10000-digit-tp", [*S, "-t", f"1P{HUGE}-1D4"], 2, "--topology: prefill TP must be at most"),
    ("topo-10000-digit-tau", [*S, "-t", f"1A4@tau={HUGE}"], 2, "--topology: router temperature"),
    ("topo-tau-1e308", [*S, "-t", "1P4-1D4@tau=1e308"], 2, "--topology: router temperature must be at most"),
    ("topo-omega-1e6", [*S, "-t", "1P4-1D4@omega=1e6"], 2, "--topology: router overlap_weight"),
    ("topo-tau-inf", [*S, "-t", "1P4-1D4@tau=inf"], 2, "--topology: router temperature must be a finite"),
    ("topo-tau-nan", [*S, "-t", "1P4-1D4@tau=nan"], 2, "--topology: router temperature must be a finite"),
    ("topo-omega-negative", [*S, "-t", "1P4-1D4@omega=-1"], 2, "--topology: router overlap_weight"),
    ("topo-duplicate-key", [*S, "-t", "1P4-1D4@tau=1,tau=2"], 2, "--topology: tau is given twice"),
    ("topo-duplicate-omega", [*S, "-t", "2A4@omega=1,tau=0,omega=1"], 2, "--topology: omega is given twice"),
    ("topo-credit-on-0.9-simulate", [*S, "-t", "1P4-1D4@credit=2"], 2, "--topology: '1P4-1D4@credit=2': credit"),
    ("topo-credit-on-0.9-dgd", ["dgd", "-p", "{p}", "-t", "1P4-1D4@credit=2"], 2, "needs Dynamo 1.3"),
    ("topo-credit-on-0.9-validate", ["validate", "-p", "{p}", "-t", "2A4@credit=0.5"], 2, "--topology: '2A4@credit"),
    ("topo-superscript", [*S, "-t", "²A4"], 2, "--topology: cannot parse"),
    ("topo-arabic-indic-digit", [*S, "-t", "\u0663A4"], 2, "--topology: cannot parse"),
    ("topo-underscore-number", [*S, "-t", "2A4@tau=1_0"], 2, "--topology: tau must be a number"),
    ("topo-empty-value", [*S, "-t", "2A4@tau="], 2, "--topology: tau must be a number"),
    ("topo-unknown-key", [*S, "-t", "2A4@speed=1"], 2, "--topology: unknown router setting"),
    ("topo-zero-workers", [*S, "-t", "0A4"], 2, "--topology: aggregated workers must be at least 1"),
    ("topo-workers-over-max", [*S, "-t", "5000A4"], 2, "--topology: aggregated workers must be at most 4096"),
    ("topo-tp-over-max", [*S, "-t", "1A2048"], 2, "--topology: TP must be at most 1024"),
    ("topo-trailing-garbage", [*S, "-t", "1P4-1D4x"], 2, "--topology: cannot parse"),
    ("topo-empty", [*S, "-t", ""], 2, "--topology: cannot parse"),
    ("topo-dgd-garbage", ["dgd", "-p", "{p}", "-t", "P4D4"], 2, "--topology: cannot parse"),
    ("topo-infeasible", [*S, "-t", "100P4-1D4"], 3, "100P4-1D4"),
    # seeds
    ("simulate-seed-negative", [*S, "--seed", "-1"], 2, "'--seed'"),
    ("simulate-seed-2-to-64", [*S, "--seed", str(2**64)], 2, "'--seed'"),
    ("run-seed-negative", ["run", "-p", "{p}", "-r", "{r}", "--seed", "-1"], 2, "'--seed'"),
    ("plan-seed-2-to-32", ["plan", "-p", "{p}", "-r", "{r}", "--seed", str(2**32)], 2, "'--seed'"),
    ("validate-seed-negative", ["validate", "-p", "{p}", "-t", "2A4", "--seed", "-5"], 2, "'--seed'"),
    # concurrency and request counts
    ("concurrency-superscript", [*S[:-2], "-c", "²"], 2, "--concurrency: '²' is not a positive integer"),
    ("concurrency-only-comma", [*S[:-2], "-c", ","], 2, "--concurrency: '' is not a positive integer"),
    ("concurrency-empty", [*S[:-2], "-c", ""], 2, "--concurrency: '' is not a positive integer"),
    ("concurrency-repeat", [*S[:-2], "-c", "4,4"], 2, "--concurrency: '4,4' must be strictly increasing"),
    ("concurrency-negative", [*S[:-2], "-c", "4,-8"], 2, "--concurrency: '-8' is not a positive integer"),
    ("concurrency-huge", [*S[:-2], "-c", "1000000000"], 2, "--concurrency: 1000000000 exceeds the maximum"),
    ("concurrency-10000-digit", [*S[:-2], "-c", HUGE], 2, "--concurrency:"),
    ("requests-below-concurrency", ["simulate", "-p", "{p}", "-c", "64", "-n", "50"], 2, "-n/--requests: 50"),
    (
        "requests-below-concurrency-profile-n",
        ["simulate", "-p", "{p}", "-c", "100"],
        2,
        "workload.requests_per_point: 60 requests",
    ),
    ("requests-below-concurrency-validate", ["validate", "-p", "{p}", "-t", "2A4", "-c", "64", "-n", "50"], 2, "-n"),
    ("requests-below-min", [*S[:-4], "-n", "5"], 2, "'-n' / '--requests'"),
    ("simulate-requests-huge", [*S[:-4], "-n", "1000000000000"], 2, "'-n' / '--requests'"),
    ("requests-not-int", [*S[:-4], "-n", "abc"], 2, "'-n' / '--requests'"),
    ("validate-concurrency-zero", ["validate", "-p", "{p}", "-t", "2A4", "-c", "0"], 2, "'-c' / '--concurrency'"),
    # click usage errors: one line, exit 2
    ("unknown-option", [*S, "--bogus"], 2, "--bogus"),
    ("bad-choice", [*S, "-o", "xml"], 2, "'-o' / '--output'"),
    ("option-missing-value", ["simulate", "-p", "{p}", "-t"], 2, "'-t'"),
    ("unknown-command", ["bogus"], 2, "'bogus'"),
    ("report-missing-argument", ["report"], 2, "'RESULTS_DIR'"),
    ("dgd-missing-topology", ["dgd", "-p", "{p}"], 2, "'-t' / '--topology'"),
    ("dgd-bad-api-version", ["dgd", "-p", "{p}", "-t", "1A4", "--api-version", "v1"], 2, "'--api-version'"),
    ("run-jobs-zero", ["run", "-p", "{p}", "-r", "{r}", "-j", "0"], 2, "'-j' / '--jobs'"),
    ("run-trials-zero", ["run", "-p", "{p}", "-r", "{r}", "-n", "0"], 2, "'-n' / '--trials'"),
    ("run-trials-huge", ["run", "-p", "{p}", "-r", "{r}", "-n", "10000000000"], 2, "'-n' / '--trials'"),
    ("run-bad-sampler", ["run", "-p", "{p}", "-r", "{r}", "--sampler", "grid"], 2, "'--sampler'"),
    ("run-speedup-inf", ["run", "-p", "{p}", "-r", "{r}", "--speedup", "inf"], 2, "'--speedup'"),
    ("cleanup-timeout-zero", ["cleanup", "--timeout", "0"], 2, "'--timeout'"),
    # commands and backends
    ("run-unknown-backend", ["run", "-p", "{p}", "-r", "{r}", "-b", "nosuch"], 2, "--backend: unknown backend"),
    ("plan-unknown-backend", ["plan", "-p", "{p}", "-r", "{r}", "-b", "nosuch"], 2, "--backend: unknown backend"),
    (
        "run-k8s-missing-kubeconfig",
        ["run", "-p", "{p}", "-r", "{r}", "-b", "k8s", "--kubeconfig", "/nonexistent/kubeconfig"],
        2,
        "--kubeconfig: /nonexistent/kubeconfig not found",
    ),
    (
        "run-k8s-missing-kubeconfig-new-dir",
        ["run", "-p", "{p}", "-r", "{new}", "-b", "k8s", "--kubeconfig", "/nonexistent/kubeconfig"],
        2,
        "--kubeconfig",
    ),
    (
        "plan-k8s-missing-kubeconfig",
        ["plan", "-p", "{p}", "-r", "{r}", "-b", "k8s", "--kubeconfig", "/nonexistent/kubeconfig"],
        2,
        "--kubeconfig",
    ),
    ("run-resume-without-study", ["run", "-p", "{p}", "-r", "{r}", "--resume", "-n", "1"], 2, "--resume:"),
    ("plan-resume-new-dir", ["plan", "-p", "{p}", "-r", "{new}", "--resume", "-n", "1"], 2, "--resume:"),
    ("profile-missing-file", ["simulate", "-p", "/nonexistent/profile.yaml"], 2, "/nonexistent/profile.yaml"),
    ("report-not-a-directory", ["report", "{new}"], 2, "RESULTS_DIR"),
    ("perf-model-unknown", [*S, "--perf-model", "magic"], 2, "--perf-model"),
    ("control-settings-a-profile", ["control", "--settings", "{p}", "--frontend", "http://127.0.0.1:9"], 2, "kind:"),
    (
        "control-settings-missing",
        ["control", "--settings", "{new}", "--frontend", "http://127.0.0.1:9"],
        2,
        "--settings",
    ),
]

# run through ``python3 -m autotune`` as well, to prove the real entry point
SUBPROCESS = {"topo-10000-digit-count", "unknown-option", "run-resume-without-study", "simulate-seed-2-to-64"}


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(d.rglob("*"))}


def _check(code: int, out: str, err: str, want_code: int, fragment: str) -> None:
    assert "Traceback" not in out + err, err
    assert code == want_code, (code, err)
    assert out == "", out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("autotune: error: "), lines[0]
    assert fragment in lines[0], (fragment, lines[0])


def _in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "tiny.yaml").write_text(TINY)
    # Hugging Face config.json files the model cases name, beside the profile
    (tmp_path / "broken.json").write_text('{"num_hidden_layers": 4,\n "hidden_size": }\n')
    (tmp_path / "list.json").write_text("[4, 512]\n")
    (tmp_path / "negative.json").write_text('{"num_hidden_layers": -4, "hidden_size": 512}\n')
    odd = {"num_hidden_layers": 4, "hidden_size": 480, "num_attention_heads": 6, "num_key_value_heads": 4}
    (tmp_path / "odd.json").write_text(json.dumps({**odd, "intermediate_size": 1024, "vocab_size": 1000}))
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("untouched\n")
    return {"p": tmp_path / "tiny.yaml", "r": results, "new": tmp_path / "new-results"}


@pytest.mark.parametrize("body,field", [c[1:] for c in PROFILE_CASES], ids=[c[0] for c in PROFILE_CASES])
@pytest.mark.parametrize("command", ["simulate", "plan"])
def test_bad_profile(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str], body: str, field: str, command: str
) -> None:
    path = env["p"].with_name("bad.yaml")
    path.write_text(body + "\n" if body.startswith("extends:") else f"extends: tiny\nname: bad\n{body}\n")
    argv = ["simulate", "-p", str(path), "-n", "20", "-c", "1"]
    if command == "plan":
        argv = ["plan", "-p", str(path), "-r", str(env["r"]), "-n", "1"]
    before = _snapshot(env["r"])
    code, out, err = _in_process(argv, capsys)
    _check(code, out, err, 2, field)
    assert f"autotune: error: {path}: " in err  # names the file first
    assert _snapshot(env["r"]) == before


@pytest.mark.parametrize("argv,code,fragment", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_bad_flag(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str
) -> None:
    argv = [a.format(**{k: str(v) for k, v in env.items()}) if "{" in a else a for a in argv]
    before = _snapshot(env["r"])
    got, out, err = _in_process(argv, capsys)
    _check(got, out, err, code, fragment)
    assert _snapshot(env["r"]) == before, "the results directory changed"
    assert not env["new"].exists(), "a results directory was created"


@pytest.mark.parametrize("case", sorted(SUBPROCESS))
def test_real_entry_point(env: dict[str, Path], case: str) -> None:
    argv, code, fragment = next(c[1:] for c in FLAG_CASES if c[0] == case)
    argv = [a.format(**{k: str(v) for k, v in env.items()}) if "{" in a else a for a in argv]
    before = _snapshot(env["r"])
    proc = subprocess.run(
        [sys.executable, "-m", "autotune", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    _check(proc.returncode, proc.stdout, proc.stderr, code, fragment)
    assert _snapshot(env["r"]) == before


CONTROL_SETTINGS = {
    "kind": "autotune/Recommendation",
    "provenance": {"dynamo_version": "1.6.1"},
    "controller": {
        "baseline_ttft_p99_ms": 50.0,
        "theta1_ms": 100.0,
        "theta2_ms": 500.0,
        "ewma_alpha": 0.3,
        "interval_s": 1.0,
        "dwell_s": 3.0,
        "hysteresis": 0.2,
        "presets": {r: {"temperature": 0.0, "overlap_weight": 1.0} for r in ("below", "transition", "saturated")},
    },
}


@pytest.mark.parametrize(
    "change,extra,fragment",
    [
        ({"kind": "autotune/Profile"}, [], "kind: 'autotune/Profile'"),
        ({"provenance": {"dynamo_version": "1.7.0"}}, [], "provenance.dynamo_version: 1.7.0"),
        ({"provenance": {"dynamo_version": "latest"}}, [], "provenance.dynamo_version"),
        ({"controller": {**CONTROL_SETTINGS["controller"], "ewma_alpha": 2}}, [], "controller.ewma_alpha"),
        ({"controller": {**CONTROL_SETTINGS["controller"], "theta2_ms": 10}}, [], "controller.theta2_ms"),
        ({"controller": {**CONTROL_SETTINGS["controller"], "presets": {}}}, [], "controller.presets"),
        ({}, ["--dgd", "llm", "-N", "prod"], "give one of --frontend URL, --local-stack DIR or --dgd"),
        ({}, ["--apply"], "--apply"),
    ],
    ids=["kind", "version-1.7", "version-text", "alpha", "theta-order", "presets", "dgd", "apply-no-stack"],
)
def test_bad_control_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], extra: list[str], fragment: str
) -> None:
    import yaml

    path = tmp_path / "recommended.yaml"
    path.write_text(yaml.safe_dump({**CONTROL_SETTINGS, **change}))
    code, out, err = _in_process(
        ["control", "--settings", str(path), "--frontend", "http://127.0.0.1:9", *extra], capsys
    )
    _check(code, out, err, 2, fragment)


def test_corpus_size() -> None:
    ids = [c[0] for c in PROFILE_CASES] + [c[0] for c in FLAG_CASES]
    assert len(ids) == len(set(ids)) >= 60
