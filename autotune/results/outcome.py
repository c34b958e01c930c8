"""What a finished study amounts to: the chosen trial, its front, the controller and the experiments.

Built by the pipeline, read by the writer and the report, so neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from autotune.adaptive import SpikeReport
from autotune.controller import ControllerSettings
from autotune.profile import Profile


@dataclass(frozen=True)
class Outcome:
    profile: Profile
    study: optuna.Study
    chosen: FrozenTrial
    front: tuple[FrozenTrial, ...]
    slo_met: bool
    baseline: FrozenTrial | None
    controller: ControllerSettings
    heatmaps: dict[str, pd.DataFrame]
    spike: SpikeReport
    backend: dict[str, Any]
    prediction: bool
    baseline_controller: ControllerSettings | None = None
    baseline_spike: SpikeReport | None = None
