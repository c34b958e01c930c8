"""The controller's checks as plain functions of what it decided and what the requests saw.

Kept apart from the experiment (``controller_eval``) so each rule is testable on hand-built
histories: a history is the controller's ``(time, EWMA ms, regime)`` per update, starting in BELOW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from autotune.controller import ControllerSettings
from autotune.regimes import BELOW, SATURATED
from autotune.seeds import excludes_one, mean_interval, paired_ratio, proportion_interval
from autotune.spike import Phase

History = Sequence[tuple[float, float, str]]


# ---- detector accounting -------------------------------------------------------------------------
def entries(history: History, regime: str) -> list[float]:
    """Times at which the controller entered ``regime`` (it starts in BELOW)."""
    out, prev = [], BELOW
    for t, _, r in history:
        if r == regime and prev != regime:
            out.append(t)
        prev = r
    return out


def false_positives(history: History, phases: Sequence[Phase], below_knee_x: float) -> list[float]:
    """Entries into SATURATED during a phase offered no more than the below-knee load, before any overload."""
    calm: list[tuple[float, float]] = []
    for p in phases:
        if p.overloaded:
            break
        if p.load_x <= below_knee_x + 1e-9:
            calm.append((p.start_s, p.end_s))
    return [t for t in entries(history, SATURATED) if any(a <= t < b for a, b in calm)]


def episodes(phases: Sequence[Phase]) -> list[tuple[float, float]]:
    """Contiguous stretches of overloaded phases (offered load past the capacity)."""
    out: list[tuple[float, float]] = []
    for p in phases:
        if not p.overloaded:
            continue
        if out and math.isclose(out[-1][1], p.start_s):
            out[-1] = (out[-1][0], p.end_s)
        else:
            out.append((p.start_s, p.end_s))
    return out


def detections(history: History, eps: Sequence[tuple[float, float]], dwell_s: float) -> list[dict[str, Any]]:
    """Per overload episode: whether the controller was in SATURATED during it, how soon, and whether it
    was missed (never, over an episode longer than the dwell)."""
    rows = []
    for start, end in eps:
        sat = [t for t, _, r in history if start <= t < end and r == SATURATED]
        rows.append(
            {
                "episode_start_s": start,
                "episode_end_s": end,
                "detected": bool(sat),
                "delay_s": (sat[0] - start) if sat else math.nan,
                "missed": not sat and end - start > dwell_s,
            }
        )
    return rows


# ---- transients ----------------------------------------------------------------------------------
def p99_ms(df: pd.DataFrame, lo: float, hi: float) -> tuple[float, int]:
    w = df[(df["arrival_s"] >= lo) & (df["arrival_s"] < hi) & (df["status"] == "ok")]
    ttft = (w["first_token_s"] - w["arrival_s"]).to_numpy(dtype=float) * 1000
    return (float(np.percentile(ttft, 99)) if len(ttft) else math.nan), len(ttft)


def transients(history: History, adaptive: pd.DataFrame, static: pd.DataFrame, window_s: float) -> list[dict[str, Any]]:
    """At each regime change: TTFT P99 of arrivals in [t − w, t) and [t, t + w) under the controller, and
    in [t, t + w) under static routing (the same arrivals: common random numbers)."""
    rows, prev = [], BELOW
    for t, _, r in history:
        if r == prev:
            continue
        before, _ = p99_ms(adaptive, t - window_s, t)
        after, n = p99_ms(adaptive, t, t + window_s)
        static_after, _ = p99_ms(static, t, t + window_s)
        rows.append(
            {
                "time_s": t,
                "switch": f"{prev}->{r}",
                "window_s": window_s,
                "requests_after": n,
                "ttft_p99_before_ms": before,
                "ttft_p99_after_ms": after,
                "static_ttft_p99_after_ms": static_after,
                "after_vs_static": after / static_after if static_after > 0 else math.nan,
                "after_vs_before": after / before if before > 0 else math.nan,
            }
        )
        prev = r
    return rows


# ---- sensitivity ---------------------------------------------------------------------------------
def sensitivity_variants(s: ControllerSettings) -> list[tuple[str, float, ControllerSettings]]:
    """The centre and each of θ1, θ2, α, dwell moved down and up alone (θ1 < θ2 kept, α in (0, 1])."""
    out: list[tuple[str, float, ControllerSettings]] = [("centre", math.nan, s)]
    for x in (0.75, 1.5):
        if s.theta1_x * x < s.theta2_x:
            out.append(("theta1_x", round(s.theta1_x * x, 3), replace(s, theta1_x=s.theta1_x * x)))
    for x in (0.75, 1.5):
        if s.theta2_x * x > s.theta1_x:
            out.append(("theta2_x", round(s.theta2_x * x, 3), replace(s, theta2_x=s.theta2_x * x)))
    for a in (s.ewma_alpha / 2, min(2 * s.ewma_alpha, 1.0)):
        if a != s.ewma_alpha:
            out.append(("ewma_alpha", round(a, 3), replace(s, ewma_alpha=a)))
    for x in (0.5, 2.0):
        out.append(("dwell_s", round(s.dwell_s * x, 4), replace(s, dwell_s=s.dwell_s * x)))
    return out


TRANSIENT_COLUMNS = [
    "seed",
    "time_s",
    "switch",
    "window_s",
    "requests_after",
    "ttft_p99_before_ms",
    "ttft_p99_after_ms",
    "static_ttft_p99_after_ms",
    "after_vs_static",
    "after_vs_before",
]


def changes(history: History) -> list[tuple[float, str]]:
    out, prev = [], BELOW
    for t, _, r in history:
        if r != prev:
            out.append((t, f"{prev}->{r}"))
        prev = r
    return out


def detector_summary(det: pd.DataFrame, level: float) -> dict[str, Any]:
    """False-positive rate (runs with any false entry into SATURATED, per schedule) and false-negative rate
    (missed overload episodes), each with its exact binomial interval."""
    out: dict[str, Any] = {}
    for name, g in det.groupby("schedule", sort=False):
        k, n = int((g["false_positives"] > 0).sum()), len(g)
        iv = proportion_interval(k, n, level)
        out[f"{name}_false_positive_rate"] = iv.value
        out[f"{name}_false_positive_rate_ci"] = [iv.lo, iv.hi]
        eps, miss = int(g["episodes"].sum()), int(g["missed"].sum())
        if eps:
            iv = proportion_interval(miss, eps, level)
            out[f"{name}_false_negative_rate"] = iv.value
            out[f"{name}_false_negative_rate_ci"] = [iv.lo, iv.hi]
            d = mean_interval(g["detection_delay_s"].tolist(), level)
            out[f"{name}_detection_delay_s"] = d.value
            out[f"{name}_detection_delay_s_ci"] = [d.lo, d.hi]
        out[f"{name}_runs"] = n
    return out


def transient_summary(tr: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per kind of switch: how many, and the geometric mean of TTFT P99 after / static after, with its interval."""
    rows = []
    for kind, g in tr.groupby("switch", sort=False):
        iv = paired_ratio(g["ttft_p99_after_ms"].tolist(), g["static_ttft_p99_after_ms"].tolist(), level)
        rows.append(
            {
                "switch": kind,
                "count": len(g),
                "after_vs_static": iv.value,
                "after_vs_static_lo": iv.lo,
                "after_vs_static_hi": iv.hi,
                "significant": excludes_one(iv),
            }
        )
    return pd.DataFrame(
        rows, columns=["switch", "count", "after_vs_static", "after_vs_static_lo", "after_vs_static_hi", "significant"]
    )
