"""``autotune trace generate`` / ``info`` and the shipped example: the trace is what the tooling writes,
its prefix groups give the reuse the distributions imply, and ``autotune simulate`` replays it."""

from __future__ import annotations

import json

import pytest

from autotune.cli.app import main
from autotune.profile import load_profile
from autotune.traces.spec import TraceSpec
from autotune.traces.trace import build_trace
from tests.conftest import ROOT

EXAMPLES = ROOT / "profiles" / "examples"


def _run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0


def test_shipped_example_trace_is_what_generate_writes(tmp_path) -> None:
    out = tmp_path / "agent.jsonl"
    source = str(EXAMPLES / "trace-source.yaml")
    _run(["trace", "generate", "-p", source, "-n", "600", "--rate-rps", "3", "--block-size-tokens", "512", str(out)])
    assert out.read_bytes() == (EXAMPLES / "traces" / "agent-600.jsonl").read_bytes()


def test_generated_prefix_groups_give_the_reuse_the_distributions_imply(tmp_path) -> None:
    out = tmp_path / "g.jsonl"
    _run(["trace", "generate", "-p", str(EXAMPLES / "trace-source.yaml"), "-n", "2000", "--seed", "4", str(out)])
    t = build_trace(TraceSpec(path="x"), out)
    w = load_profile(EXAMPLES / "trace-source.yaml").workload
    assert int(t.template.max()) + 1 == w.templates
    assert t.mean_shared_tokens() == w.prefix_tokens  # 4 whole 512-token blocks per request
    # an infinite cache misses only each group's first request: reuse = prefix / mean input
    assert t.reuse_rate() == pytest.approx(w.prefix_tokens / t.input_tokens.mean(), rel=0.01)
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"timestamp", "input_length", "output_length", "hash_ids"}


def test_example_profile_info_and_simulate(capsys) -> None:
    example = str(EXAMPLES / "trace-replay.yaml")
    _run(["trace", "info", "-p", example, "-o", "json"])
    info = json.loads(capsys.readouterr().out)
    assert info["requests"] == 600 and info["prefix_groups"] == 4 and info["format"] == "mooncake"
    assert info["mean_rate_rps"] == pytest.approx(3 * 1.5, rel=0.15)  # rate_scale 1.5 on a 3 req/s trace
    _run(["simulate", "-p", example, "-t", "1P4-1D4", "-c", "16", "-n", "300", "-o", "json"])
    (point,) = json.loads(capsys.readouterr().out)["points"]
    assert point["prefix_hit_rate"] == pytest.approx(info["reuse_rate"], abs=0.05)
    assert point["trace_requests"] == 600 and point["trace_passes"] == -(-point["requests_run"] // 600)


def test_generate_refuses_a_profile_that_replays_a_trace(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trace", "generate", "-p", str(EXAMPLES / "trace-replay.yaml"), "/dev/null"])
    assert exc.value.code == 2 and "this profile replays a trace" in capsys.readouterr().err
