"""The controller's simulations give the same figures on one process or several."""

from __future__ import annotations

import pandas as pd

from autotune.adaptive import controller_experiment
from autotune.presets import heatmap
from autotune.profile import profile_from_dict
from autotune.search.evaluate import evaluate_topology
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
