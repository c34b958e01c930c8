"""What a finished study amounts to: the chosen trial, its front, the controller and the experiments.

Built by the pipeline, read by the writer and the report, so neither of those imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from autotune.adaptive import ControllerExperiment
from autotune.controller import ControllerSettings
from autotune.controller_eval import SpikeReport
from autotune.profile import Profile


@dataclass(frozen=True)
class Outcome:
    profile: Profile
    study: optuna.Study
    chosen: FrozenTrial
    front: tuple[FrozenTrial, ...]
    slo_met: bool
    baseline: FrozenTrial | None
    experiment: ControllerExperiment  # the controller derived and tested on the chosen topology
    backend: dict[str, Any]
    prediction: bool
    baseline_experiment: ControllerExperiment | None = None  # the same on the baseline (when it differs)
    ties: tuple[str, ...] = ()  # shapes indistinguishable from the recommendation (search.select.ties)

    @property
    def controller(self) -> ControllerSettings:
        return self.experiment.settings

    @property
    def heatmaps(self) -> dict[str, pd.DataFrame]:
        return self.experiment.grids

    @property
    def spike(self) -> SpikeReport:
        return self.experiment.spike

    @property
    def baseline_controller(self) -> ControllerSettings | None:
        return self.baseline_experiment.settings if self.baseline_experiment else None

    @property
    def baseline_spike(self) -> SpikeReport | None:
        return self.baseline_experiment.spike if self.baseline_experiment else None
