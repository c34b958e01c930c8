"""Router grouping: a shape the sampler proposed is held for k trials in a row, the sampler choosing the router."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autotune.profile import load_profile
from autotune.search import grouping
from autotune.search.space import shape_params, suggest_topology
from autotune.search.study import make_sampler

PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "h100-70b.yaml"


def _study(sampler: str, block: int, trials: int, seed: int = 5) -> list[tuple[str, str]]:
    """(shape, router) of each trial of a study whose objective is a plain function of the topology."""
    profile = load_profile(str(PROFILE))
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(sampler, seed))
    blocks = grouping.ShapeBlocks(block)
    out = []
    for _ in range(trials):
        fixed = blocks.next_fixed()
        with grouping.fixing(study, fixed):
            trial = study.ask()
            topo = suggest_topology(trial, profile)
        if fixed:
            assert shape_params(trial.params) == fixed
        study.tell(trial, [1 + topo.router.temperature, topo.gpus / (1 + topo.router.overlap_weight)])
        blocks.finished(trial.params, complete=True)
        out.append((topo.shape(), topo.router.to_string()))
    assert isinstance(study.sampler, type(make_sampler(sampler, seed)))  # the wrapper is gone after each ask
    return out


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2"])
def test_each_proposed_shape_runs_k_times_in_a_row_with_the_samplers_routers(sampler: str) -> None:
    runs = _study(sampler, block=3, trials=15)
    i = 0
    while i < len(runs):
        j = i
        while j < len(runs) and runs[j][0] == runs[i][0]:
            j += 1
        assert j - i >= 3 or j == len(runs), runs  # a shape runs at least k times (more if proposed again)
        assert len({r for _, r in runs[i:j]}) > 1, runs[i:j]  # the router varies within the block
        i = j
    assert _study(sampler, block=3, trials=15) == runs  # reproducible for a seed


def test_a_failed_trial_ends_its_block() -> None:
    blocks = grouping.ShapeBlocks(3)
    shape = {"mode": "disagg", "prefill_tp": 4, "prefill_workers": 1, "decode_tp": 4, "decode_workers": 2}
    blocks.finished({**shape, "temperature": 0.1, "overlap_weight": 1.0}, complete=True)
    assert blocks.next_fixed() == shape
    blocks.finished({**shape, "temperature": 0.5, "overlap_weight": 1.0}, complete=False)
    assert blocks.next_fixed() == {}
