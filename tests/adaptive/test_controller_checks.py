"""The controller's checks on hand-built inputs: detector false positives / negatives, the transient at a
switch, the keep-the-default decision, the sensitivity grid and the over-seeds statistics."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from autotune.controller import ControllerSettings
from autotune.controller_checks import (
    detections,
    detector_summary,
    entries,
    episodes,
    false_positives,
    sensitivity_variants,
    transients,
)
from autotune.errors import ProfileError
from autotune.presets import choose_preset
from autotune.profile import profile_from_dict
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.seeds import excludes_one, mean_interval, paired_ratio, proportion_interval
from autotune.spike import Phase
from autotune.topology import DEFAULT_ROUTER, RouterSettings

# offered load over capacity per 10 s phase: calm, calm, over, over (spike), recovery
PHASES = (
    Phase("low", 0, 10, 0.3),
    Phase("high", 10, 20, 0.6),
    Phase("over", 20, 30, 1.2),
    Phase("spike", 30, 40, 1.5),
    Phase("recovery", 40, 50, 0.3),
)
KNEE_X = 0.6  # the sweep measured 0.6 × capacity below the knee


def _history(regimes: dict[float, str], end: float = 50, step: float = 1) -> list[tuple[float, float, str]]:
    """One update per ``step`` s; ``regimes`` maps a time to the regime from then on."""
    out, cur, t = [], BELOW, step
    while t <= end:
        cur = regimes.get(t, cur)
        out.append((t, 0.0, cur))
        t += step
    return out


def test_entries_start_from_below() -> None:
    h = _history({3: TRANSITION, 5: SATURATED, 8: BELOW, 9: SATURATED})
    assert entries(h, SATURATED) == [5, 9]
    assert entries(h, TRANSITION) == [3]


def test_false_positive_only_below_the_knee_and_before_any_overload() -> None:
    # enters SATURATED at 12 s (calm 0.6 ≤ knee: false), leaves, re-enters at 25 s (overload: true),
    # leaves, re-enters at 45 s (recovery, after an overload: the backlog drains, not counted)
    h = _history({12: SATURATED, 15: BELOW, 25: SATURATED, 35: BELOW, 45: SATURATED})
    assert false_positives(h, PHASES, KNEE_X) == [12]
    # a phase above the knee but below capacity is not ground truth for "below the knee"
    assert false_positives(h, PHASES, 0.5) == []


def test_episodes_merge_adjacent_overloaded_phases() -> None:
    assert episodes(PHASES) == [(20, 40)]
    assert episodes(PHASES[:2]) == []


def test_false_negative_is_an_overload_longer_than_the_dwell_never_flagged() -> None:
    eps = episodes(PHASES)
    seen = detections(_history({24: SATURATED}), eps, dwell_s=3)
    assert seen == [{"episode_start_s": 20, "episode_end_s": 40, "detected": True, "delay_s": 4, "missed": False}]
    never = detections(_history({24: TRANSITION}), eps, dwell_s=3)
    assert never[0]["missed"] and not never[0]["detected"] and math.isnan(never[0]["delay_s"])
    # an episode shorter than the dwell cannot be demanded of the controller
    assert not detections(_history({}), [(20, 22)], dwell_s=3)[0]["missed"]
    # already SATURATED when the overload starts: detected with no delay
    assert detections(_history({18: SATURATED}), eps, dwell_s=3)[0]["delay_s"] == 0


def test_detector_summary_rates_over_seeds() -> None:
    det = pd.DataFrame(
        [
            {
                "schedule": "calm",
                "seed": s,
                "false_positives": fp,
                "episodes": 0,
                "missed": 0,
                "detection_delay_s": math.nan,
            }
            for s, fp in ((0, 0), (1, 2), (2, 0), (3, 0))
        ]
        + [
            {"schedule": "spike", "seed": s, "false_positives": 0, "episodes": 1, "missed": m, "detection_delay_s": d}
            for s, m, d in ((0, 0, 2.0), (1, 1, math.nan), (2, 0, 4.0), (3, 0, 3.0))
        ]
    )
    s = detector_summary(det, 0.95)
    assert s["calm_false_positive_rate"] == pytest.approx(0.25)
    lo, hi = s["calm_false_positive_rate_ci"]
    assert 0 < lo < 0.25 < hi < 1
    assert "calm_false_negative_rate" not in s  # no overload in the calm schedule: no FN rate to speak of
    assert s["spike_false_negative_rate"] == pytest.approx(0.25)
    assert s["spike_detection_delay_s"] == pytest.approx(3.0)  # mean of the detected episodes


def _requests(rows: list[tuple[float, float]]) -> pd.DataFrame:
    """(arrival, TTFT) pairs as request records."""
    return pd.DataFrame(
        {
            "arrival_s": [a for a, _ in rows],
            "first_token_s": [a + t for a, t in rows],
            "status": ["ok"] * len(rows),
        }
    )


def test_transient_compares_the_windows_around_a_switch_and_the_static_run() -> None:
    # switch to SATURATED at t=10; adaptive TTFT 0.1 s before, 0.4 s for 2 s after, then 0.1 s; static 0.2 s
    adaptive = _requests([(t / 10, 0.4 if 10 <= t / 10 < 12 else 0.1) for t in range(0, 200)])
    static = _requests([(t / 10, 0.2) for t in range(0, 200)])
    rows = transients(_history({10: SATURATED}, end=20), adaptive, static, window_s=2)
    assert len(rows) == 1
    r = rows[0]
    assert r["switch"] == f"{BELOW}->{SATURATED}" and r["time_s"] == 10 and r["requests_after"] == 20
    assert r["ttft_p99_before_ms"] == pytest.approx(100)
    assert r["ttft_p99_after_ms"] == pytest.approx(400)
    assert r["after_vs_static"] == pytest.approx(2.0) and r["after_vs_before"] == pytest.approx(4.0)
    assert transients(_history({}, end=20), adaptive, static, window_s=2) == []  # no switch, no transient


def _grid(cells: list[tuple[float, float, float, float, float, float]]) -> pd.DataFrame:
    """(τ, ω, PoA-hat, its half-width, TTFT P99 ms, its half-width) per cell."""
    return pd.DataFrame(
        [
            {
                "concurrency": 64,
                "temperature": t,
                "overlap_weight": w,
                "poa_hat": p,
                "poa_hat_lo": p - ph,
                "poa_hat_hi": p + ph,
                "ttft_p99_ms": q,
                "ttft_p99_ms_lo": q - qh,
                "ttft_p99_ms_hi": q + qh,
            }
            for t, w, p, ph, q, qh in cells
        ]
    )


def test_keep_default_when_no_cell_is_significantly_better() -> None:
    # the nominally best cell (τ=0.7) has a lower PoA-hat, but inside the default's noise
    g = _grid([(0.0, 1.0, 1.20, 0.05, 100, 5), (0.7, 1.0, 1.16, 0.05, 99, 5), (1.0, 0.0, 1.40, 0.05, 150, 5)])
    ch = choose_preset(SATURATED, g)
    assert ch.keep_default and ch.preset == DEFAULT_ROUTER
    assert "no (τ, ω) cell" in ch.reason
    assert ch.default_cell is not None and ch.default_cell["poa_hat"] == pytest.approx(1.20)
    assert ch.best_cell is not None and ch.best_cell["temperature"] == 0.7  # the evidence names the runner-up
    assert ch.as_dict()["keep_default"] is True


def test_a_preset_replaces_the_default_only_beyond_the_noise() -> None:
    g = _grid([(0.0, 1.0, 1.20, 0.02, 100, 5), (0.7, 1.0, 1.05, 0.02, 99, 5), (1.0, 0.0, 1.10, 0.02, 98, 5)])
    ch = choose_preset(SATURATED, g)
    assert not ch.keep_default and ch.preset == RouterSettings(temperature=0.7, overlap_weight=1.0)
    # lower PoA-hat but TTFT P99 worse beyond the noise: not better
    g = _grid([(0.0, 1.0, 1.20, 0.02, 100, 5), (0.7, 1.0, 1.05, 0.02, 200, 5)])
    assert choose_preset(SATURATED, g).keep_default


def test_sensitivity_moves_one_parameter_at_a_time() -> None:
    s = ControllerSettings(100.0, 2.0, 4.0, ewma_alpha=0.3, dwell_s=3.0)
    v = sensitivity_variants(s)
    assert v[0][0] == "centre" and v[0][2] == s
    names = [n for n, _, _ in v[1:]]
    assert sorted(set(names)) == ["dwell_s", "ewma_alpha", "theta1_x", "theta2_x"]
    for name, value, vs in v[1:]:
        changed = {f for f in ("theta1_x", "theta2_x", "ewma_alpha", "dwell_s") if getattr(vs, f) != getattr(s, f)}
        assert changed == {name} and getattr(vs, name) == pytest.approx(value)
        assert vs.theta1_x < vs.theta2_x and 0 < vs.ewma_alpha <= 1
    # θ1 × 1.5 = 3 < θ2 = 4 stays; θ2 × 0.75 = 3 > θ1 = 2 stays; θ1 so close to θ2 that 1.5× would cross it: dropped
    tight = sensitivity_variants(ControllerSettings(100.0, 3.0, 4.0))
    assert ("theta1_x", 4.5) not in [(n, x) for n, x, _ in tight]


def test_over_seed_statistics() -> None:
    iv = mean_interval([1.0, 2.0, 3.0], 0.95)
    assert iv.value == 2.0 and iv.lo < 1.0 and iv.hi > 3.0  # t(0.975, 2) = 4.30, se 0.577
    assert math.isnan(mean_interval([5.0], 0.95).lo)
    r = paired_ratio([2.0, 4.0, 8.0], [1.0, 2.0, 4.0], 0.95)
    assert r.value == pytest.approx(2.0) and r.lo < 2.0 < r.hi and excludes_one(r)  # the same 2× every seed
    same = paired_ratio([3.0, 5.0], [3.0, 5.0], 0.95)
    assert same.value == 1.0 and not excludes_one(same)  # identical runs: no difference, ±1 % floor
    p = proportion_interval(0, 3, 0.95)
    assert p.value == 0 and p.lo == 0 and p.hi == pytest.approx(1 - 0.025 ** (1 / 3))


@pytest.mark.parametrize(
    ("section", "field"),
    [({"seeds": 1}, "controller_eval.seeds"), ({"overload_x": 0.9}, "controller_eval.overload_x")],
)
def test_bad_controller_eval_names_its_field(section: dict[str, float], field: str) -> None:
    base = {
        "name": "x",
        "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
        "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16", "kv_dtype": "bf16"},
    }
    with pytest.raises(ProfileError) as err:
        profile_from_dict({**base, "controller_eval": section}, "p.yaml")
    assert err.value.path == field
