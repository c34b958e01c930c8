"""Pluggable step-time models: how long one engine step of one worker takes.

Like Optuna's samplers, a perf model is chosen by name (``roofline`` or ``mocker``) and the
simulator only talks to the small ``StepTimer`` protocol, so a measured-table model can be added
without touching the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from autotune.errors import InputError
from autotune.profile import Profile


class StepTimer(Protocol):
    """Step time of one worker (GPU × model × TP × dtype)."""

    def step_s(
        self,
        prefill_tokens: int,
        prefill_attn: float,
        decode_seqs: int,
        decode_ctx_tokens: int,
        kv_usage: float,
    ) -> float:
        """Seconds for one step.

        prefill_tokens: new (uncached) prompt tokens computed this step, over all prefill chunks;
        prefill_attn: Σ n·(p + n/2) over chunks (n new, p already-present tokens) — attention work;
        decode_seqs / decode_ctx_tokens: sequences decoding one token and their summed context;
        kv_usage: fraction of the worker's KV blocks in use (the mocker's timing needs it).
        """
        ...


class PerfModel(Protocol):
    name: str

    def timer(self, tp: int) -> StepTimer: ...

    def describe(self) -> dict[str, object]: ...


PerfModelFactory = Callable[..., PerfModel]
_REGISTRY: dict[str, PerfModelFactory] = {}


def register(name: str, factory: PerfModelFactory) -> None:
    _REGISTRY[name] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_perf_model(name: str, profile: Profile, **options: object) -> PerfModel:
    if name not in _REGISTRY:
        raise InputError(f"--perf-model: unknown perf model {name!r} (choose from {', '.join(available())})")
    return _REGISTRY[name](profile, **options)


def prefill_attn_work(new_tokens: int, cached_tokens: int) -> float:
    """Σ n·(p + n/2) term of one prefill chunk (perf_model.md §3)."""
    return new_tokens * (cached_tokens + new_tokens / 2)


from autotune.perf import mocker as _mocker  # noqa: E402  (registration side effect)
from autotune.perf import roofline as _roofline  # noqa: E402

register("roofline", _roofline.RooflinePerfModel)
register("mocker", _mocker.MockerPerfModel)
