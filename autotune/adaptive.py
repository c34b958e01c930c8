"""Derive the adaptive controller's settings for a topology by simulation, and test them.

1. Baseline TTFT P99 at the lowest grid point; θ1/θ2 as multiples of it, read off the topology's
   own sweep (the TTFT P99 where it enters transition and saturation).
2. Presets (``autotune.presets``): a (τ, ω) grid measured in each regime the sweep reached, on
   common random numbers; Dynamo's default stays unless a cell is significantly better, and when
   no regime has one the controller recommends keeping the default, with the evidence.
3. The open-loop tests (``autotune.controller_eval``): ramp past the measured capacity and a spike,
   static vs adaptive over seeds; detector errors; transients at switches; sensitivity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from autotune.controller import ControllerSettings
from autotune.controller_eval import SpikeReport, evaluate_controller
from autotune.presets import PresetChoice, choose_preset, heatmap, not_reached
from autotune.profile import Profile
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.scoring import TrialResult
from autotune.topology import Topology

__all__ = ["ControllerExperiment", "SpikeReport", "controller_experiment", "derive_controller"]


def regime_concurrency(result: TrialResult, regime: str) -> int | None:
    """The first sweep point in ``regime`` (BELOW falls back to the lightest point); None: never reached."""
    cands = [p.metrics.concurrency for p in result.points if p.regime == regime]
    if cands:
        return cands[0]
    return result.points[0].metrics.concurrency if regime == BELOW else None


def derive_controller(
    profile: Profile,
    topology: Topology,
    result: TrialResult,
    *,
    seed: int,
    requests: int | None = None,
    jobs: int = 1,
) -> tuple[ControllerSettings, dict[str, pd.DataFrame], dict[str, PresetChoice]]:
    pts = result.points
    base = pts[0].metrics.ttft_p99_ms
    if not math.isfinite(base) or base <= 0:
        base = min(p.metrics.ttft_p99_ms for p in pts if math.isfinite(p.metrics.ttft_p99_ms))
    trans = [p.metrics.ttft_p99_ms for p in pts if p.regime == TRANSITION]
    sat = [p.metrics.ttft_p99_ms for p in pts if p.regime == SATURATED]
    theta1 = (trans[0] / base) if trans else 2.0
    theta2 = (sat[0] / base) if sat else max(theta1 * 5.0, 10.0)  # the paper's 340B: θ2 = 10 θ1 (paper.md §5)
    theta1 = max(1.25, round(theta1, 2))
    theta2 = max(theta1 * 1.5, round(theta2, 2))
    grids: dict[str, pd.DataFrame] = {}
    choices: dict[str, PresetChoice] = {}
    for regime in (BELOW, TRANSITION, SATURATED):
        c = regime_concurrency(result, regime)
        if c is None:
            top = pts[-1].metrics.concurrency
            choices[regime] = not_reached(regime, f"the sweep never reached this regime (up to C={top}): no grid")
            continue
        key = f"{regime}@C{c}"
        if key not in grids:
            grids[key] = heatmap(profile, topology, c, seed=seed, requests=requests, jobs=jobs)
        choices[regime] = choose_preset(regime, grids[key])
    presets = {r: ch.preset for r, ch in choices.items()}
    return ControllerSettings(base, theta1, theta2, presets=presets), grids, choices


@dataclass(frozen=True)
class ControllerExperiment:
    """The controller derived for one topology, the grids and choices behind it, and its tests."""

    settings: ControllerSettings
    grids: dict[str, pd.DataFrame]
    choices: dict[str, PresetChoice]
    spike: SpikeReport

    @property
    def keep_default(self) -> bool:
        """No regime has a preset significantly better than Dynamo's default."""
        return all(c.keep_default for c in self.choices.values())


def controller_experiment(
    profile: Profile,
    topology: Topology,
    result: TrialResult,
    *,
    seed: int,
    requests: int | None = None,
    sensitivity: bool = False,
    jobs: int = 1,
) -> ControllerExperiment:
    """Derive the controller from the topology's sweep, then test it under open-loop load.

    ``jobs``: processes for the preset grids' cells (the figures do not depend on it)."""
    settings, grids, choices = derive_controller(profile, topology, result, seed=seed, requests=requests, jobs=jobs)
    spike = evaluate_controller(profile, topology, settings, result, seed=seed, sensitivity=sensitivity, jobs=jobs)
    return ControllerExperiment(settings, grids, choices, spike)
