"""A simulated study runs each effective configuration once: router settings the router never reads
make no difference to a simulated run, so a twin's result is reused, exactly."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from typing import Any

import pytest
from optuna.trial import TrialState

from autotune import backends
from autotune.profile import profile_from_dict
from autotune.search import trials
from autotune.search.config import StudyConfig
from autotune.search.evaluate import evaluate_topology
from autotune.search.study import run_study
from autotune.sim.router import RouterRules, effective_router
from autotune.topology import RouterSettings, parse_topology

PAPER = RouterRules.for_version((0, 9))
ONE_X = RouterRules.for_version((1, 6))


def _profile(version: str = "0.9.0", **search: Any) -> Any:
    return profile_from_dict(
        {
            "name": "reuse-tiny",
            "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
            "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
            "dynamo": {"version": version},
            "workload": {
                "templates": 4,
                "prefix_tokens": 64,
                "input_tokens": {"dist": "fixed", "value": 128},
                "output_tokens": {"dist": "fixed", "value": 16},
                "concurrency": [16],
                "requests_per_point": 160,
                "warmup_requests": 16,
                "cooldown_requests": 16,
            },
            "measurement": {"adaptive": False},
            "search": {
                "trials": 8,
                "operating_point": "grid",
                "prefill_tp": [4],
                "decode_tp": [4],
                "aggregated_tp": [4],
                "temperature": [0.0, 1.0],
                "overlap_weight": [0.0, 2.0],
                "router_step": 0.5,
                **search,
            },
            "baselines": [],
        },
        "reuse-tiny",
    )


@pytest.mark.parametrize(
    "topology,rules,expected",
    [
        ("1P4-3D4@tau=0.5,omega=1.5", PAPER, "tau=0.5,omega=1"),  # one prefill worker: ω decides nothing
        ("1P4-1D4@tau=0.5,omega=1.5", PAPER, "tau=0,omega=1"),  # neither stage has a choice
        ("2P4-1D4@tau=0.5,omega=0", PAPER, "tau=0,omega=0"),  # 0.9 at ω = 0: random ties either way
        ("2P4-1D4@tau=0.5,omega=0", ONE_X, "tau=0.5,omega=0"),  # 1.x breaks τ = 0 ties by the radix tree
        ("2P4-1D4@tau=0.5,omega=1.5", PAPER, "tau=0.5,omega=1"),  # prefill logits ω·load: ω > 0 only scales
        ("2P4-2D4@tau=0.5,omega=0.5,credit=3", ONE_X, "tau=0.5,omega=1,credit=3"),  # credit is not a scale
        ("2P4-2D4@tau=0.5,omega=0,credit=3", ONE_X, "tau=0.5,omega=0"),  # credit acts only through ω > 0
        ("1A4@tau=0.5,omega=0", PAPER, "tau=0,omega=1"),
        ("3A4@tau=0.5,omega=0", PAPER, "tau=0.5,omega=0"),
    ],
)
def test_effective_router_keeps_only_the_settings_the_router_reads(
    topology: str, rules: RouterRules, expected: str
) -> None:
    assert effective_router(parse_topology(topology), rules).to_string() == expected


def _figures(x: Any) -> str:
    """Every figure, NaN included, whatever the float type (stored results read back as plain floats)."""
    return json.dumps([asdict(p) for p in x] if isinstance(x, tuple) else asdict(x), sort_keys=True)


def _same_result(profile: Any, a: str, b: str) -> tuple[Any, Any]:
    kw: dict[str, Any] = {"seed": 3, "concurrency": [16, 32]}
    ra = evaluate_topology(profile, parse_topology(a), "sim", **kw)
    rb = evaluate_topology(profile, parse_topology(b), "sim", **kw)
    return ra, replace(rb, topology=ra.topology)


@pytest.mark.parametrize(
    "version,a,b",
    [
        ("0.9.0", "1P4-3D4@tau=0.5,omega=0.5", "1P4-3D4@tau=0.5,omega=2"),
        ("0.9.0", "1P4-1D4@tau=0,omega=1", "1P4-1D4@tau=1,omega=0"),
        ("0.9.0", "3P4-1D4@tau=0,omega=0", "3P4-1D4@tau=1,omega=0"),
        ("1.6.1", "2P4-2D4@tau=0.5,omega=0", "2P4-2D4@tau=0.5,omega=0,credit=2"),
        ("0.9.0", "1A4@tau=0,omega=0", "1A4@tau=1,omega=2"),
        ("0.9.0", "3P4-1D4@tau=0.5,omega=0.5", "3P4-1D4@tau=0.5,omega=2"),
        ("1.6.1", "2P4-2D4@tau=0,omega=0.5,credit=2", "2P4-2D4@tau=0,omega=1.5,credit=2"),
    ],
)
def test_topologies_with_one_result_key_simulate_identically(version: str, a: str, b: str) -> None:
    prof = _profile(version)
    assert backends.result_key("sim", prof, parse_topology(a)) == backends.result_key("sim", prof, parse_topology(b))
    ra, rb = _same_result(prof, a, b)
    assert _figures(ra) == _figures(rb)  # every figure of every point, the objectives and their intervals (NaN too)


@pytest.mark.parametrize(
    "version,a,b",
    [
        ("0.9.0", "3P4-1D4@tau=0,omega=0", "3P4-1D4@tau=0,omega=0.5"),
        ("1.6.1", "3P4-1D4@tau=0,omega=0", "3P4-1D4@tau=1,omega=0"),
        ("0.9.0", "1P4-3D4@tau=0,omega=1", "1P4-3D4@tau=1,omega=1"),
        ("0.9.0", "3A4@tau=0,omega=0.5", "3A4@tau=0,omega=2"),  # aggregated: ω weighs load against blocks
        ("1.6.1", "2P4-2D4@tau=0,omega=1,credit=0.5", "2P4-2D4@tau=0,omega=1,credit=2"),
    ],
)
def test_settings_the_router_reads_give_other_keys_and_other_results(version: str, a: str, b: str) -> None:
    prof = _profile(version)
    assert backends.result_key("sim", prof, parse_topology(a)) != backends.result_key("sim", prof, parse_topology(b))
    ra, rb = _same_result(prof, a, b)
    assert _figures(ra) != _figures(rb)  # the control: the comparison above can fail


def test_live_backends_have_no_result_key() -> None:
    prof = _profile()
    topo = parse_topology("1P4-1D4")
    assert backends.result_key("dynamo-local", prof, topo) is None
    assert backends.result_key("k8s", prof, topo) is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_study_answers_twins_from_the_first_and_their_results_are_what_a_run_gives(tmp_path: Any, jobs: int) -> None:
    # every shape here has one prefill and one decode worker, so every router setting is a twin of τ 0, ω 1
    prof = _profile(max_prefill_workers=1, max_decode_workers=1, min_gpus=1)
    cfg = StudyConfig(tmp_path, 8, "sim", seed=prof.seed, jobs=jobs)
    study = run_study(prof, cfg)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(done) == 8
    reused = [t for t in done if t.user_attrs.get(trials.SAME_AS) is not None]
    keys = {backends.result_key("sim", prof, parse_topology(t.user_attrs[trials.TOPOLOGY])) for t in done}
    simulated = len(done) - len(reused)
    assert reused and (simulated == len(keys) if jobs == 1 else simulated >= len(keys))  # -j 2: a twin in flight runs
    for t in reused:
        twin = study.trials[t.user_attrs[trials.SAME_AS]]
        assert twin.state == TrialState.COMPLETE and trials.SAME_AS not in twin.user_attrs
        assert t.values == twin.values and t.user_attrs[trials.DURATION_S] == 0.0
        topo = parse_topology(t.user_attrs[trials.TOPOLOGY])
        ran = evaluate_topology(prof, topo, "sim", seed=prof.seed, concurrency=list(prof.workload.concurrency))
        stored = trials.read_result(t)
        assert stored.topology == ran.topology and _figures(stored.points) == _figures(ran.points)
        assert [stored.poa_objective, stored.tok_s_per_gpu] == [ran.poa_objective, ran.tok_s_per_gpu]
    line = trials.trial_line(study.trials[reused[0].number], 8, 8)
    assert f"as #{reused[0].user_attrs[trials.SAME_AS]}: not re-simulated" in line
    frame = trials.trials_frame(study)
    assert frame["same_as"].notna().sum() == len(reused) and not math.isnan(frame["duration_s"].max())
    again = run_study(prof, replace(cfg, results_dir=tmp_path / "again"))  # reproducible for a seed and -j
    assert [_trace(t) for t in again.trials] == [_trace(t) for t in study.trials]


def _trace(t: Any) -> tuple[Any, ...]:
    return t.state, t.user_attrs.get(trials.TOPOLOGY), t.values, t.user_attrs.get(trials.SAME_AS)


def test_router_settings_equal_to_the_default_are_not_mistaken_for_a_change() -> None:
    assert effective_router(parse_topology("2P4-2D4"), PAPER) == RouterSettings()
