"""Knee detection on synthetic curves."""

from __future__ import annotations

import numpy as np

from autotune.regimes import BELOW, SATURATED, TRANSITION, detect_regimes

C = [16, 32, 64, 96, 128, 192, 256]


def test_flat_then_explosive() -> None:
    ttft = [50, 51, 53, 60, 400, 3000, 9000]
    poa = [1.0, 1.0, 1.01, 1.02, 1.3, 2.0, 3.0]
    r = detect_regimes(C, ttft, poa)
    assert r.knee_concurrency == 128
    assert r.labels[:3] == (BELOW, BELOW, BELOW)
    assert r.labels[4:] == (SATURATED,) * 3


def test_linear_growth_is_not_a_knee() -> None:
    ttft = [c * 2.0 for c in C]  # latency ∝ load: elasticity exactly 1
    r = detect_regimes(C, ttft, [1.0] * len(C))
    assert r.knee_index is None
    assert all(lab == TRANSITION for lab in r.labels[1:])


def test_single_noisy_spike_is_ignored() -> None:
    ttft = [50, 52, 400, 55, 56, 58, 60]  # one outlier at C=64, back to normal after
    r = detect_regimes(C, ttft, [1.0] * len(C))
    assert r.knee_index is None


def test_knee_robust_to_noise() -> None:
    rng = np.random.default_rng(0)
    base = np.array([50, 51, 53, 60, 400, 3000, 9000], dtype=float)
    for _ in range(20):
        noisy = base * rng.uniform(0.9, 1.1, size=len(base))
        assert detect_regimes(C, list(noisy), [1.0, 1.0, 1.0, 1.0, 1.2, 1.5, 2.0]).knee_concurrency == 128


def test_poa_drop_vetoes_knee() -> None:
    ttft = [50, 51, 53, 60, 400, 3000, 9000]
    poa = [2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]  # routing got much better: not routing saturation
    r = detect_regimes(C, ttft, poa)
    assert r.knee_concurrency != 128


def test_no_knee_on_a_rise_inside_the_noise() -> None:
    """A steep TTFT rise whose intervals overlap the previous point's is noise: no knee on it."""
    c = [16, 32, 64, 128]
    ttft = [10.0, 10.5, 11.0, 40.0]
    wide = [(5.0, 15.0), (5.0, 16.0), (5.0, 20.0), (15.0, 60.0)]
    assert detect_regimes(c, ttft, [1.0] * 4).knee_concurrency == 128
    assert detect_regimes(c, ttft, [1.0] * 4, ttft_intervals=wide).knee_concurrency is None
    tight = [(9.9, 10.1), (10.4, 10.6), (10.9, 11.1), (39.0, 41.0)]
    assert detect_regimes(c, ttft, [1.0] * 4, ttft_intervals=tight).knee_concurrency == 128
