"""How hard the adaptive controller is tested (profile section ``controller_eval``).

Its own section so the controller's evaluation budget is one place: seeds, how long a load phase
lasts against a request's duration, how far the spike goes past the measured capacity, and whether
the one-at-a-time sensitivity study runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from autotune.profile_schema import _Strict


class ControllerEvalSpec(_Strict):
    # seeds of the open-loop experiments (ramp and spike, detector check): every figure's interval is over them
    seeds: Annotated[int, Field(ge=2, le=20)] = 3
    # a load phase lasts this many mean request durations (E2E) at the load below the knee
    phase_e2e_multiple: Annotated[float, Field(ge=2, le=100)] = 4.0
    # the ramp's top and the spike, as multiples of the measured capacity (both past it)
    overload_x: Annotated[float, Field(gt=1, le=4)] = 1.2
    spike_x: Annotated[float, Field(gt=1, le=8)] = 1.5
    # the one-at-a-time sensitivity of the outcome to θ1, θ2, EWMA α and dwell (recommended topology only)
    sensitivity: bool = True
    sensitivity_seeds: Annotated[int, Field(ge=2, le=20)] = 2
