"""The controller experiment end to end on a small cluster that saturates early (8 sequences per engine):
the ramp really passes the measured capacity, phases outlast the requests in them, every figure has
an interval over seeds, and a controller watching a static run decides as it would in the loop."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import pytest

from autotune.adaptive import controller_experiment
from autotune.controller import ControllerSettings
from autotune.controller_eval import evaluate_controller
from autotune.profile import Profile, profile_from_dict
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.search.evaluate import evaluate_topology
from autotune.spike import measure_capacity, plan_load, routers, run_policy, scaled
from autotune.topology import DEFAULT_ROUTER, RouterSettings, parse_topology

SMALL: dict[str, Any] = {
    "name": "ctl",
    "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16", "kv_dtype": "bf16"},
    "engine": {"max_num_seqs": 8},
    "workload": {
        "templates": 4,
        "prefix_tokens": 96,
        "input_tokens": {"dist": "fixed", "value": 256},
        "output_tokens": {"dist": "uniform", "min": 16, "max": 48},
        "concurrency": [2, 8, 32],
        "requests_per_point": 300,
        "warmup_requests": 30,
        "cooldown_requests": 30,
    },
    "measurement": {"max_requests": 1200},
    "controller_eval": {"seeds": 3, "sensitivity_seeds": 2},
}
TOPO = parse_topology("1P1-2D1")


@pytest.fixture(scope="module")
def small() -> Profile:
    return profile_from_dict(SMALL)


@pytest.fixture(scope="module")
def sweep(small: Profile) -> Any:
    return evaluate_topology(small, TOPO, seed=0)


def test_a_watching_controller_decides_as_in_the_loop(small: Profile, sweep: Any) -> None:
    """With every preset the default the controller cannot change the run: watching a static run, it makes
    the decisions it makes in the loop, and watching does not change the run."""
    cap, src = measure_capacity(small, TOPO, sweep, seed=0)
    plan = plan_load(small, sweep, cap, src, small.controller_eval)
    defaults = dict.fromkeys((BELOW, TRANSITION, SATURATED), DEFAULT_ROUTER)
    s = scaled(ControllerSettings(sweep.points[0].metrics.ttft_p99_ms, 2.0, 5.0, presets=defaults), plan.phase_s)
    other = dataclasses.replace(s, ewma_alpha=0.6)
    bare = run_policy(small, TOPO, plan, plan.spike, seed=1, router=DEFAULT_ROUTER)
    watched = run_policy(small, TOPO, plan, plan.spike, seed=1, router=DEFAULT_ROUTER, watchers=[s, other])
    steered = run_policy(small, TOPO, plan, plan.spike, seed=1, router=DEFAULT_ROUTER, controller=s)
    pd.testing.assert_frame_equal(bare.run.requests, watched.run.requests)
    assert watched.watched[0] == steered.history and steered.run.router_changes == []
    assert SATURATED in {r for _, _, r in steered.history}  # the spike is seen
    assert watched.watched[1] != watched.watched[0]  # each watcher keeps its own state


def test_a_watcher_that_sets_the_same_routers_is_the_run(small: Profile, sweep: Any) -> None:
    """Under a steering controller, a watcher whose routers never depart from the steering ones decides as it
    would have in the loop: the run it watched is its run."""
    cap, src = measure_capacity(small, TOPO, sweep, seed=0)
    plan = plan_load(small, sweep, cap, src, small.controller_eval)
    lb = RouterSettings(temperature=1.0, overlap_weight=0.0)
    presets = {BELOW: DEFAULT_ROUTER, TRANSITION: DEFAULT_ROUTER, SATURATED: lb}
    s = scaled(ControllerSettings(sweep.points[0].metrics.ttft_p99_ms, 2.0, 5.0, presets=presets), plan.phase_s)
    same = dataclasses.replace(s, theta2_x=s.theta2_x * 1.0001)  # no EWMA falls in that sliver: same decisions
    centre = run_policy(small, TOPO, plan, plan.spike, seed=2, router=DEFAULT_ROUTER, controller=s, watchers=[s, same])
    assert centre.run.router_changes  # it did steer
    assert routers(same, centre.watched[1]) == routers(s, centre.history)
    alone = run_policy(small, TOPO, plan, plan.spike, seed=2, router=DEFAULT_ROUTER, controller=same)
    assert alone.history == centre.watched[1]
    pd.testing.assert_frame_equal(alone.run.requests, centre.run.requests)


@pytest.mark.slow
def test_experiment_saturates_and_reports_over_seeds(small: Profile, sweep: Any) -> None:
    e = controller_experiment(small, TOPO, sweep, seed=0, sensitivity=True)
    s, p = e.spike, e.spike.plan
    # the plan: the ramp passes the measured capacity; a phase lasts several mean request durations
    assert p.capacity_rps > 0 and max(ph.load_x for ph in p.spike) > 1
    assert p.phase_s == pytest.approx(small.controller_eval.phase_e2e_multiple * p.mean_e2e_s)
    assert all(ph.load_x * p.capacity_rps <= p.below_knee_rps + 1e-9 for ph in p.calm)
    # it really saturates: the static TTFT P99 over capacity is far above the first ramp phase's
    st = s.phases[s.phases["policy"] == "static"].set_index("phase")
    first, spike = p.spike[0].name, p.spike[3].name
    assert st.loc[spike, "ttft_p99_ms"] > 3 * st.loc[first, "ttft_p99_ms"]
    # every phase figure carries an interval over the seeds
    assert (s.phases["seeds"] == 3).all()
    for f in ("poa_hat", "ttft_p99_ms", "output_tok_s"):
        ok = s.phases[f"{f}_lo"] <= s.phases[f] + 1e-12
        assert ok.all() and (s.phases[f] <= s.phases[f"{f}_hi"] + 1e-12).all()
    assert len(s.per_seed) == 2 * 3 * len(p.spike)
    # the detector was checked on both schedules for every seed
    assert sorted(s.detector["schedule"].unique()) == ["calm", "spike"] and len(s.detector) == 6
    assert {"calm_false_positive_rate", "spike_false_negative_rate"} <= set(s.detector_summary)
    assert s.sensitivity is not None and set(s.sensitivity["parameter"]) >= {"centre", "theta1_x", "dwell_s"}
    # the verdict covers every regime, with a reason
    assert set(e.choices) == {BELOW, TRANSITION, SATURATED} and all(c.reason for c in e.choices.values())
    assert e.keep_default == all(c.preset == DEFAULT_ROUTER for c in e.choices.values())


@pytest.mark.slow
def test_a_non_default_preset_runs_the_controller_in_the_loop(small: Profile, sweep: Any) -> None:
    """A saturated preset off the default: the adaptive runs are simulated, its switches change the router,
    and each switch has a transient measured against the static run."""
    base = ControllerSettings(sweep.points[0].metrics.ttft_p99_ms, 2.0, 5.0)
    lb = RouterSettings(temperature=1.0, overlap_weight=0.0)
    s = dataclasses.replace(base, presets={BELOW: DEFAULT_ROUTER, TRANSITION: DEFAULT_ROUTER, SATURATED: lb})
    rep = evaluate_controller(small, TOPO, s, sweep, seed=0, sensitivity=False)
    assert not rep.replayed and rep.sensitivity is None
    assert 1 <= rep.adaptive_runs_simulated <= rep.adaptive_runs == 6  # spike and calm per seed
    to_sat = rep.transients[rep.transients["switch"].str.endswith(f"->{SATURATED}")]
    assert len(to_sat) >= 1 and to_sat["static_ttft_p99_after_ms"].map(math.isfinite).all()
    a = rep.per_seed[rep.per_seed["policy"] == "adaptive"].reset_index(drop=True)
    b = rep.per_seed[rep.per_seed["policy"] == "static"].reset_index(drop=True)
    assert (a["requests"] == b["requests"]).all()  # the same arrivals: common random numbers
