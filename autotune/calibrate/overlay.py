"""The calibrated constants as a profile overlay: the sections and fields the fit set, nothing else.

Loaded with ``extends:`` (the overlay file names the profile it calibrates) or merged in memory
(``apply_overlay``), so a study on the calibrated profile is a study on the measured deployment.
"""

from __future__ import annotations

import math
from typing import Any

from autotune.calibrate.engine import EngineConstants
from autotune.calibrate.fit import HostFit, ParamFit
from autotune.profile import Profile, _deep_merge, profile_from_dict

# no frontend queue of its own: with this many servers the fitted per-request work is a pure delay
UNQUEUED_FRONTEND_WORKERS = 1024
# an exponential's median is ln 2 of its mean: the robust intercept sits at the median of the jitter
_EXP_MEDIAN = math.log(2)


def _fitted(fits: dict[str, ParamFit], name: str) -> bool:
    return name in fits and fits[name].status == "fitted"


def build_overlay(profile: Profile, engine: EngineConstants, fits: list[ParamFit], host: HostFit) -> dict[str, Any]:
    """Profile sections holding every fitted constant (unfitted ones are left to the profile)."""
    by = {f.name: f for f in fits}
    perf: dict[str, float] = {}
    if _fitted(by, "prefill_mfu"):
        perf["prefill_mfu"] = round(engine.prefill_mfu, 4)
    if _fitted(by, "decode_mbu"):
        perf["decode_mbu"] = round(engine.decode_mbu, 4)
    if _fitted(by, "step_overhead_ms"):
        perf["step_overhead_ms"] = round(engine.step_overhead_ms, 4)
        perf["per_layer_overhead_us"] = 0.0  # the fitted figure is the whole fixed cost of a step
    out: dict[str, Any] = {}
    if perf:
        out["perf"] = perf
    if host.request_ms.status == "fitted":
        jitter = host.jitter_ms if host.jitter_ms is not None else profile.dynamo.frontend_jitter_ms
        # the engine's first token reaches the client stream_ms later: the same TTFT as more host work
        stream = engine.stream_ms if _fitted(by, "stream_ms") else 0.0
        request_ms = max(0.0, host.request_ms.value - _EXP_MEDIAN * jitter + stream)
        dyn: dict[str, Any] = {
            "frontend_workers": profile.dynamo.frontend_workers or UNQUEUED_FRONTEND_WORKERS,
            "frontend_request_ms": round(request_ms, 4),
            "frontend_overhead_ms": round(jitter, 4),
            "frontend_jitter_ms": round(jitter, 4),
        }
        if host.input_token_us.status == "fitted":
            dyn["frontend_input_token_us"] = round(max(0.0, host.input_token_us.value), 4)
        out["dynamo"] = dyn
    if _fitted(by, "kv_transfer_ms"):
        out["kv_transfer"] = {"setup_ms": round(engine.kv_transfer_ms, 4), "handover_ms": 0.0}
    return out


def apply_overlay(profile: Profile, overlay: dict[str, Any]) -> Profile:
    """``profile`` with ``overlay`` merged in, as ``extends:`` would give it."""
    merged = _deep_merge(profile.resolved_dict(), overlay)
    return profile_from_dict(merged, f"{profile.source} + calibration")
