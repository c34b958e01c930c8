"""The adaptive controller (``controller.py``): EWMA of TTFT P99 against two thresholds, with a dwell
time between switches and hysteresis on the way down.

Baseline TTFT P99 100 ms, θ1 = 2× (200 ms), θ2 = 4× (400 ms), dwell 3 s, hysteresis 20 % (leave a
regime only below 0.8 × its entry threshold). With ``ewma_alpha=1`` the EWMA is the last interval's
P99, and one TTFT per interval makes that P99 the TTFT itself, so the thresholds are hit exactly.
"""

from __future__ import annotations

import pytest

from autotune.controller import PAPER_PRESETS, AdaptiveController, ControllerSettings
from autotune.regimes import BELOW, SATURATED, TRANSITION


def _controller(alpha: float = 1.0) -> AdaptiveController:
    return AdaptiveController(
        ControllerSettings(
            baseline_ttft_p99_ms=100.0, theta1_x=2.0, theta2_x=4.0, ewma_alpha=alpha, dwell_s=3.0, hysteresis=0.2
        )
    )


def _feed(c: AdaptiveController, ttft_ms: list[float], start_s: float = 1.0) -> list[str]:
    """One update per second (t = start, start+1, ...), one TTFT each; the regime after each."""
    out = []
    for i, ms in enumerate(ttft_ms):
        c.update(start_s + i, [ms / 1000])
        out.append(c.regime)
    return out


def _switches(c: AdaptiveController) -> int:
    regimes = [BELOW] + [r for _, _, r in c.history]
    return sum(a != b for a, b in zip(regimes, regimes[1:], strict=False))


def test_thresholds_scale_with_the_baseline() -> None:
    s = _controller().s
    assert (s.theta1_ms, s.theta2_ms) == (pytest.approx(200.0), pytest.approx(400.0))


def test_nothing_observed_nothing_set() -> None:
    c = _controller()
    assert c.update(1.0, []) is None
    assert c.ewma_ms is None and c.regime == BELOW and c.history == []


def test_switch_waits_for_the_dwell_time() -> None:
    c = _controller()
    # t=1..: the EWMA is over θ1 from the first update, but the controller has been in BELOW since t=0
    assert _feed(c, [300, 300, 300, 300]) == [BELOW, BELOW, TRANSITION, TRANSITION]  # switches at t=3
    assert c.since_s == 3.0
    # over θ2 from t=5: SATURATED waits until 3 s after the last switch (t=6)
    assert _feed(c, [500, 500, 500], start_s=5.0) == [TRANSITION, SATURATED, SATURATED]
    assert c.since_s == 6.0
    assert c.update(7.0, [0.5]) == PAPER_PRESETS[SATURATED]


def test_no_flapping_around_a_threshold_within_the_hysteresis_band() -> None:
    c = _controller()
    # around θ1 = 200 ms, never below 0.8 × 200 = 160 ms: one switch up, none back down
    wobble = [190, 210, 185, 205, 170, 230, 165, 199, 161, 201] * 3
    regimes = _feed(c, wobble)
    assert regimes[:2] == [BELOW, BELOW]  # the dwell from t=0
    assert set(regimes[3:]) == {TRANSITION}
    assert _switches(c) == 1
    # around θ2 likewise, once SATURATED: stays while over 0.8 × 400 = 320 ms
    regimes = _feed(c, [410, 390, 330, 420, 325, 399, 321] * 3, start_s=40.0)
    assert set(regimes) == {SATURATED}  # the dwell since t=3 is long past: up at once, then held
    assert _switches(c) == 2


def test_returns_below_after_load_drops() -> None:
    c = _controller()
    assert _feed(c, [500] * 3) == [BELOW, BELOW, SATURATED]
    # load drops to just under the hysteresis line of SATURATED (320 ms), over θ1: TRANSITION, after the dwell
    assert _feed(c, [300] * 4, start_s=4.0) == [SATURATED, SATURATED, TRANSITION, TRANSITION]
    # under θ1 but inside its band (160..200 ms): stays TRANSITION however long
    assert set(_feed(c, [180] * 10, start_s=8.0)) == {TRANSITION}
    # clearly low: back to BELOW, with the BELOW preset
    assert _feed(c, [100] * 2, start_s=18.0) == [BELOW, BELOW]
    assert c.update(20.0, [0.1]) == PAPER_PRESETS[BELOW]
    assert _switches(c) == 3  # BELOW → SATURATED → TRANSITION → BELOW


def test_saturated_can_step_straight_down_to_below() -> None:
    c = _controller()
    _feed(c, [500] * 4)
    assert c.regime == SATURATED
    assert _feed(c, [50] * 4, start_s=10.0)[0] == BELOW  # dwell long past: at once, skipping TRANSITION


def test_ewma_smooths_a_single_spike() -> None:
    c = _controller(alpha=0.3)
    _feed(c, [100] * 5)
    # one 400 ms interval: EWMA 0.3·400 + 0.7·100 = 190 ms, under θ1: no switch
    assert _feed(c, [400, 100], start_s=6.0) == [BELOW, BELOW]
    assert c.ewma_ms == pytest.approx(0.3 * 100 + 0.7 * 190)
    # sustained 300 ms: the EWMA is 160 ms after one interval, 202 ms (≥ θ1) after the second
    c2 = _controller(alpha=0.3)
    _feed(c2, [100] * 5)
    assert _feed(c2, [300, 300], start_s=6.0) == [BELOW, TRANSITION]
    assert c2.ewma_ms == pytest.approx(202.0)
