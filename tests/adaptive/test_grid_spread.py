"""grid_spread: the paper's "PoA-hat mean ± SD over the 16 (τ, ω) configs" and the cells beyond the noise."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from autotune.presets import grid_spread


def _cell(tau: float, omega: float, poa: float, poa_hw: float, ttft: float = 100.0, ttft_hw: float = 5.0) -> dict:
    return {
        "temperature": tau,
        "overlap_weight": omega,
        "poa_hat": poa,
        "poa_hat_lo": poa - poa_hw,
        "poa_hat_hi": poa + poa_hw,
        "ttft_p99_ms": ttft,
        "ttft_p99_ms_lo": ttft - ttft_hw,
        "ttft_p99_ms_hi": ttft + ttft_hw,
    }


def test_spread_statistics_and_cells_beyond_the_noise() -> None:
    grid = pd.DataFrame(
        [
            _cell(0.0, 1.0, 20.0, 0.5),  # Dynamo's default
            _cell(0.0, 0.0, 19.8, 0.5),  # overlaps the default
            _cell(1.0, 1.0, 24.0, 0.5, ttft=130.0),  # beyond it on both figures
            _cell(1.0, 0.0, 16.0, 0.5),  # beyond it on PoA-hat only
        ]
    )
    s = grid_spread(grid)
    assert s.cells == 4
    assert s.poa_mean == pytest.approx(19.95)
    assert s.poa_sd == pytest.approx(pd.Series([20.0, 19.8, 24.0, 16.0]).std(ddof=1))
    assert (s.poa_min, s.poa_max) == (16.0, 24.0)
    assert s.max_over_min == pytest.approx(1.5)
    assert (s.poa_differs, s.ttft_differs) == (2, 1)


def test_cells_without_poa_are_left_out_and_no_default_means_no_comparison() -> None:
    grid = pd.DataFrame([_cell(0.3, 0.5, 10.0, 0.1), _cell(0.7, 0.5, math.nan, math.nan), _cell(1.0, 2.0, 30.0, 0.1)])
    s = grid_spread(grid)
    assert s.cells == 2
    assert s.poa_mean == pytest.approx(20.0)
    assert (s.poa_differs, s.ttft_differs) == (0, 0)
