"""Has the traffic moved? A window of the real traffic (a trace) against the workload the study assumed.

Figures: mean input and output tokens per request (t-intervals over the window's requests) and the
request rate (exact Poisson interval), held against the study's workload — its trace, or its
distributions' means (exact values, so a drift needs the window's interval to exclude them). The
same rule as the serving figures: beyond the threshold and outside the noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from autotune.drift.verdict import FigureDrift, compare_all
from autotune.errors import InputError
from autotune.intervals import Interval
from autotune.profile import Profile, profile_from_dict
from autotune.traces.spec import TraceSpec
from autotune.traces.trace import Trace, load_trace
from autotune.workload import mean_shape

LEVEL = 0.95


def _mean(x: np.ndarray) -> Interval:
    n = len(x)
    m = float(np.mean(x))
    if n < 2:
        return Interval(m, math.nan, math.nan)
    h = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * np.std(x, ddof=1) / math.sqrt(n))
    return Interval(m, m - h, m + h)


def _rate(n: int, span_s: float) -> Interval:
    """Events per second with the exact (Garwood) Poisson interval on the count."""
    if span_s <= 0 or n < 1:
        return Interval(math.nan, math.nan, math.nan)
    a = 1 - LEVEL
    lo = stats.chi2.ppf(a / 2, 2 * n) / 2
    hi = stats.chi2.ppf(1 - a / 2, 2 * n + 2) / 2
    return Interval(n / span_s, lo / span_s, hi / span_s)


def trace_figures(t: Trace) -> dict[str, Interval]:
    span = float(t.arrival_s[-1] - t.arrival_s[0]) if len(t) > 1 else 0.0
    return {
        "input_tokens_mean": _mean(t.input_tokens.astype(float)),
        "output_tokens_mean": _mean(t.output_tokens.astype(float)),
        "rate_rps": _rate(len(t) - 1, span),
    }


def assumed_figures(profile: Profile) -> dict[str, Interval]:
    """What the study's workload assumed: its own trace's figures, or its distributions' exact means."""
    w = profile.workload
    if w.trace is not None:
        return trace_figures(load_trace(w.trace))
    shape = mean_shape(w)
    out = {
        "input_tokens_mean": Interval(shape.input_tokens, shape.input_tokens, shape.input_tokens),
        "output_tokens_mean": Interval(shape.output_tokens, shape.output_tokens, shape.output_tokens),
    }
    if w.open_loop and w.rate_rps is not None:
        out["rate_rps"] = Interval(w.rate_rps, w.rate_rps, w.rate_rps)
    return out


def traffic_spec(path: Path, fmt: str, last_s: float | None) -> TraceSpec:
    """The window of the traffic file to judge: all of it, or its last ``last_s`` seconds."""
    if not path.is_file():
        raise InputError(f"--traffic: {path}: no such file")
    spec = TraceSpec(path=str(path.resolve()), format=fmt)  # type: ignore[arg-type]
    if last_s is None:
        return spec
    whole = load_trace(spec)
    span = float(whole.arrival_s[-1] - whole.arrival_s[0])
    return spec.model_copy(update={"start_s": max(0.0, span - last_s)})


def traffic_drift(profile: Profile, spec: TraceSpec, threshold: float) -> tuple[list[FigureDrift], dict[str, Any]]:
    window = load_trace(spec)
    measured = trace_figures(window)
    drifts = compare_all("assumed_traffic", assumed_figures(profile), measured, threshold)
    return drifts, {"path": spec.path, "format": spec.format, "start_s": spec.start_s, "requests": len(window)}


def with_traffic(profile: Profile, spec: TraceSpec) -> Profile:
    """The study's profile replaying the traffic window (closed loop when the study measured closed loop)."""
    data = profile.model_dump(mode="json", exclude_none=True)
    w = data["workload"]
    mode = "timestamps" if profile.workload.open_loop else "closed_loop"
    for key in ("arrival", "rate_rps", "spike"):
        w.pop(key, None)
    w["trace"] = {**spec.model_dump(mode="json", exclude_none=True), "mode": mode}
    return profile_from_dict(data, f"{profile.source} + traffic {spec.path}")
