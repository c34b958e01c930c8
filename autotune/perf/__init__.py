"""Pluggable step-time models: how long one engine step of one worker takes.

Like Optuna's samplers, a perf model is chosen from an explicit table (``PERF_MODELS``) and the
simulator only talks to the small ``StepTimer`` protocol (``perf.base``), so a measured-table model
can be added without touching the engine: write the class, add one row to the table.
"""

from __future__ import annotations

from collections.abc import Callable

from autotune.errors import InputError
from autotune.perf.base import PerfModel, StepTimer, prefill_attn_work
from autotune.perf.mocker import MockerPerfModel
from autotune.perf.npz import NpzPerfModel
from autotune.perf.roofline import RooflinePerfModel
from autotune.profile import Profile

__all__ = ["PERF_MODELS", "PerfModel", "StepTimer", "available", "get_perf_model", "prefill_attn_work"]

PerfModelFactory = Callable[..., PerfModel]

PERF_MODELS: dict[str, PerfModelFactory] = {
    "roofline": RooflinePerfModel,  # analytic roofline (perf_model.md)
    "mocker": MockerPerfModel,  # Dynamo mocker's default polynomial
    "mocker-npz": NpzPerfModel,  # the mocker's interpolated NPZ tables (what dynamo-local workers run)
}


def available() -> list[str]:
    return sorted(PERF_MODELS)


def get_perf_model(name: str, profile: Profile, **options: object) -> PerfModel:
    if name not in PERF_MODELS:
        raise InputError(f"--perf-model: unknown perf model {name!r} (choose from {', '.join(available())})")
    return PERF_MODELS[name](profile, **options)
