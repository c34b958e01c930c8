"""Every shipped profile loads, its baselines fit its cluster, and ``autotune simulate`` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.cli import main
from autotune.feasibility import check_feasibility
from autotune.profile import PROFILES_DIR, load_profile
from autotune.topology import parse_topology

SHIPPED = sorted(p.stem for p in Path(PROFILES_DIR).glob("*.yaml"))


def test_expected_profiles_are_shipped() -> None:
    assert {"paper-70b-1p5d", "paper-70b-1p2d", "paper-340b-1p2d", "h100-70b", "long-context-70b"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_loads_and_baselines_fit(name: str) -> None:
    prof = load_profile(name)
    assert prof.name == name
    assert prof.baselines, "a shipped profile names at least one baseline topology"
    for text in prof.baselines:
        feas = check_feasibility(parse_topology(text), prof)
        assert feas.ok, f"{name}: baseline {text}: {feas.reason}"
    assert prof.workload.requests_per_point <= 2000  # keeps `autotune simulate` fast
    assert load_profile(PROFILES_DIR / f"{name}.yaml").digest() == prof.digest()


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_simulates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    prof = load_profile(name)
    grid = prof.workload.concurrency
    points = f"{grid[0]},{grid[-1]}"
    with pytest.raises(SystemExit) as info:
        # 400 requests: enough for C=256 plus the warm-up and cool-down edges (fewer is refused)
        main(["simulate", "--profile", name, "--concurrency", points, "--requests", "400", "-o", "json"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    data = json.loads(out)
    assert data["profile"] == name and data["topology"].startswith(prof.baselines[0])
    assert [p["concurrency"] for p in data["points"]] == [grid[0], grid[-1]]
    for p in data["points"]:
        assert p["requests"] > 0 and p["rejected"] == 0 and p["output_tok_s"] > 0
        assert 0 < p["ttft_p50_ms"] <= p["ttft_p99_ms"] and p["itl_p50_ms"] > 0


def test_paper_profiles_match_the_paper() -> None:
    """paper.md §6: 3×8 B200, FP8, Dynamo 0.9.0 + vLLM, 128-token prompts from 5 templates."""
    for name, model, first in [
        ("paper-70b-1p5d", "Llama-3.1-70B", "1P4-5D4"),
        ("paper-70b-1p2d", "Llama-3.1-70B", "1P4-2D4"),
        ("paper-340b-1p2d", "Nemotron-4-340B", "1P8-2D8"),
    ]:
        p = load_profile(name)
        assert (p.cluster.nodes, p.cluster.gpus_per_node, p.cluster.gpu.name) == (3, 8, "B200")
        assert (p.model.name, p.model.weight_dtype, p.model.kv_dtype) == (model, "fp8", "fp8")
        assert (p.dynamo.version, p.dynamo.framework) == ("0.9.0", "vllm")
        assert p.workload.templates == 5 and p.workload.min_input_tokens() == 128
        assert p.baselines[0] == first
        assert p.search.target_concurrency == 128
    # the 340B's TP8 workers take whole nodes: every P→D transfer crosses InfiniBand
    p340 = load_profile("paper-340b-1p2d")
    assert check_feasibility(parse_topology("1P8-2D8"), p340).placement == ((0,), (1,), (2,))
