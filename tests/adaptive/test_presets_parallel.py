"""The controller's simulations give the same figures on one process or several."""

from __future__ import annotations

import pandas as pd

from autotune.adaptive import controller_experiment
from autotune.backends import result_key
from autotune.backends.sim import SimBackend
from autotune.metrics import summarize
from autotune.presets import heatmap
from autotune.profile import profile_from_dict
from autotune.search.evaluate import evaluate_topology
from autotune.topology import RouterSettings
from tests.adaptive.test_controller_experiment import SMALL, TOPO


def test_grid_on_two_processes_equals_the_grid_on_one() -> None:
    prof = profile_from_dict(SMALL)
    one = heatmap(prof, TOPO, 8, seed=3, jobs=1)
    two = heatmap(prof, TOPO, 8, seed=3, jobs=2)
    assert len(one) == 16 and one["requests"].nunique() == 1  # every cell on the default cell's length
    pd.testing.assert_frame_equal(one, two)


def test_controller_experiment_on_two_processes_equals_one() -> None:
    prof = profile_from_dict(SMALL)
    sweep = evaluate_topology(prof, TOPO, seed=0)
    one = controller_experiment(prof, TOPO, sweep, seed=0, jobs=1)
    two = controller_experiment(prof, TOPO, sweep, seed=0, jobs=2)
    assert one.settings == two.settings and one.grids.keys() == two.grids.keys()
    for key in one.grids:
        pd.testing.assert_frame_equal(one.grids[key], two.grids[key])
    pd.testing.assert_frame_equal(one.spike.per_seed, two.spike.per_seed)
    pd.testing.assert_frame_equal(one.spike.detector, two.spike.detector)
    assert one.spike.adaptive_runs_simulated == two.spike.adaptive_runs_simulated


def test_each_cell_is_a_fixed_run_of_its_router_and_equal_routers_run_once() -> None:
    prof = profile_from_dict(SMALL)
    grid = heatmap(prof, TOPO, 8, seed=3)
    cells = list(grid[["temperature", "overlap_weight"]].itertuples(index=False, name=None))
    keys = {result_key("sim", prof, TOPO.with_router(RouterSettings(t, w))) for t, w in cells}
    assert len(keys) == 4  # one prefill worker: ω reads nothing, so only τ (the decode stage's) remains
    figures = grid.drop(columns=["temperature", "overlap_weight"]).drop_duplicates()
    assert len(figures) == len(keys)  # cells of one key share one run, and different τ differ
    fixed = prof.model_copy(update={"measurement": prof.measurement.model_copy(update={"adaptive": False})})
    n = int(grid["requests"].iloc[0])
    for t, w in [(0.0, 1.0), (0.7, 2.0)]:  # the default cell too is a fixed run, like every other
        dep = SimBackend().deploy(fixed, TOPO)
        dep.set_router(RouterSettings(t, w))
        run = dep.run_point(8, seed=3, requests=n)
        row = grid[(grid["temperature"] == t) & (grid["overlap_weight"] == w)].iloc[0]
        assert row["ttft_p99_ms"] == summarize(run).ttft_p99_ms
