"""Knee detection on hand-built closed-loop sweeps whose figures carry intervals (docs/regimes.md)."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.intervals import Interval
from autotune.regimes import BELOW, SATURATED, TRANSITION, detect_regimes

C = [16, 32, 64, 96, 128, 192, 256]
NAN = float("nan")


def iv(values: list[float], rel: float = 0.02) -> list[Interval]:
    """Figures with a ±rel confidence interval."""
    return [Interval(v, v * (1 - rel), v * (1 + rel)) for v in values]


# a clear saturation: throughput grows with load up to C=96 and then stays flat; TTFT P99 is flat, then
# explodes (queueing): 96 → 128 is a 1.33× load step with a 5× TTFT step
TPUT = [1600.0, 3150.0, 6100.0, 8600.0, 8650.0, 8640.0, 8660.0]
TTFT = [50.0, 51.0, 55.0, 70.0, 350.0, 1500.0, 2800.0]


def test_clear_saturation_is_a_knee() -> None:
    r = detect_regimes(C, iv(TTFT), iv(TPUT))
    assert r.knee_concurrency == 128 and r.knee_index == 4
    assert r.labels == (BELOW, BELOW, BELOW, TRANSITION, SATURATED, SATURATED, SATURATED)


def test_noise_inside_the_interval_never_creates_a_knee() -> None:
    """A sweep far below saturation (throughput ∝ load, flat TTFT) with noise drawn inside ±5 % intervals:
    no knee, whatever the draw. Near the top the load steps are small (1.33×) so noise is comparable."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        tput = [100.0 * c * rng.uniform(0.97, 1.03) for c in C]
        ttft = [50.0 * rng.uniform(0.95, 1.05) for _ in C]
        r = detect_regimes(C, iv(ttft, 0.05), iv(tput, 0.05))
        assert r.knee_index is None and SATURATED not in r.labels


def test_noisy_plateau_inside_the_interval_is_not_a_knee() -> None:
    """Throughput stalls, but TTFT P99 wobbles inside its wide interval: the TTFT rise is not significant."""
    tput = [1600.0, 3200.0, 6400.0, 6500.0]
    ttft = [50.0, 52.0, 60.0, 140.0]
    wide = [Interval(t, t * 0.5, t * 1.6) for t in ttft]
    assert detect_regimes(C[:4], wide, iv(tput)).knee_index is None
    assert detect_regimes(C[:4], iv(ttft), iv(tput)).knee_concurrency == 96  # the same rise, tight intervals


def test_the_same_figures_with_tight_intervals_give_the_knee() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        jitter = rng.uniform(0.99, 1.01, size=len(C))
        r = detect_regimes(C, iv(list(np.array(TTFT) * jitter)), iv(list(np.array(TPUT) * jitter[::-1])))
        assert r.knee_concurrency == 128


def test_latency_proportional_to_load_with_growing_throughput_is_not_a_knee() -> None:
    """TTFT ∝ C but throughput still grows significantly: not saturated (and TTFT is not faster than load)."""
    r = detect_regimes(C, iv([2.0 * c for c in C]), iv([100.0 * c for c in C]))
    assert r.knee_index is None
    assert r.labels[0] == BELOW and set(r.labels[1:]) == {TRANSITION}  # TTFT grows faster than √C


def test_stall_without_a_ttft_explosion_is_transition_not_a_knee() -> None:
    """Throughput flat from C=64 on while TTFT P99 grows only like load: no knee, transition."""
    tput = [1600.0, 3200.0, 6400.0, 6400.0, 6400.0, 6400.0, 6400.0]
    ttft = [50.0, 50.0, 50.0, 75.0, 100.0, 150.0, 200.0]
    r = detect_regimes(C, iv(ttft, 0.01), iv(tput, 0.01))
    assert r.knee_index is None
    assert r.labels == (BELOW, BELOW, BELOW, TRANSITION, TRANSITION, TRANSITION, TRANSITION)


def test_a_blip_undone_at_the_next_point_is_not_a_knee() -> None:
    """One point whose TTFT jumps and throughput dips, both back at the next point: not the knee."""
    tput = [1600.0, 3200.0, 3100.0, 9600.0, 12800.0]
    ttft = [50.0, 51.0, 400.0, 52.0, 53.0]
    r = detect_regimes(C[:5], iv(ttft), iv(tput))
    assert r.knee_index is None


def test_knee_at_the_last_point() -> None:
    r = detect_regimes(C[:5], iv(TTFT[:5]), iv(TPUT[:5]))
    assert r.knee_concurrency == 128 and r.labels[-1] == SATURATED


def test_no_intervals_no_decision() -> None:
    unknown = [Interval(v, NAN, NAN) for v in TTFT]
    r = detect_regimes(C, unknown, [Interval(v, NAN, NAN) for v in TPUT])
    assert r.knee_index is None and set(r.labels) == {BELOW}
    assert detect_regimes(C, iv(TTFT), [Interval(v, NAN, NAN) for v in TPUT]).knee_index is None


def test_one_interval_per_point() -> None:
    with pytest.raises(ValueError):
        detect_regimes(C, iv(TTFT), iv(TPUT[:3]))
