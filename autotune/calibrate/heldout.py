"""Predict live points with the simulator, before and after calibration, and score the predictions.

A point recorded on ``dynamo-local`` is predicted as ``autotune validate`` would: the simulator runs the
mockers' own tables (tabulated from the profile's roofline at the point's speed-up) on the local
stack's twin (``validate.mocker_equivalent``, no host queues); any other point runs the roofline directly.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autotune.backends.sim import SimBackend
from autotune.calibrate.points import LivePoint
from autotune.dynamo.mocker_timing import plan_timing
from autotune.metrics import PointMetrics, summarize
from autotune.profile import Profile
from autotune.validate import mocker_equivalent

# the figures compared, and the validate targets they are held to (autotune.validate.CHECKS)
FIGURES: tuple[tuple[str, float], ...] = (
    ("ttft_p50_ms", 0.10),
    ("ttft_p99_ms", 0.15),
    ("itl_mean_ms", 0.10),
    ("output_tok_s", 0.10),
)


def twin(profile: Profile, point: LivePoint, overlay: dict[str, Any] | None) -> Profile:
    """The profile as the simulator should run it for ``point``, with ``overlay`` on top when given."""
    from autotune.calibrate.overlay import apply_overlay

    base = mocker_equivalent(profile) if point.mocker_tables else profile
    return apply_overlay(base, overlay) if overlay else base


def simulate(profile: Profile, point: LivePoint, seed: int) -> PointMetrics:
    """One simulated run of ``point``'s topology, concurrency and length."""
    n = len(point.run.requests)
    with tempfile.TemporaryDirectory(prefix="autotune-calibrate-") as tmp:
        if point.mocker_tables:
            plan = plan_timing(profile, point.topology, Path(tmp), speedup=point.speedup)
            name, opts = plan.sim_backend_options()
        else:
            name, opts = "roofline", {}
        run = (
            SimBackend(name, **opts).deploy(profile, point.topology).run_point(point.concurrency, seed=seed, requests=n)
        )
    return summarize(run, level=profile.measurement.ci_level)


@dataclass
class Prediction:
    point: LivePoint
    held_out: bool
    live: PointMetrics
    before: PointMetrics
    after: PointMetrics

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for fig, target in FIGURES:
            live = float(getattr(self.live, fig))
            b, a = float(getattr(self.before, fig)), float(getattr(self.after, fig))
            out.append(
                {
                    "point": self.point.name,
                    "topology": self.point.topology.to_string(),
                    "concurrency": self.point.concurrency,
                    "held_out": self.held_out,
                    "figure": fig,
                    "live": live,
                    "live_lo": float(getattr(self.live, f"{fig}_lo", math.nan)),
                    "live_hi": float(getattr(self.live, f"{fig}_hi", math.nan)),
                    "before": b,
                    "after": a,
                    "error_before": (b - live) / live if live else math.nan,
                    "error_after": (a - live) / live if live else math.nan,
                    "target": target,
                }
            )
        return out


def predict(
    profile: Profile, points: list[LivePoint], held_out: set[str], overlay: dict[str, Any], seed: int
) -> pd.DataFrame:
    """Per point and figure: live (with its interval), predicted before and after, relative errors."""
    rows: list[dict[str, Any]] = []
    for pt in points:
        live = summarize(pt.run, level=profile.measurement.ci_level)
        before = simulate(twin(profile, pt, None), pt, seed)
        after = simulate(twin(profile, pt, overlay), pt, seed)
        rows += Prediction(pt, pt.name in held_out, live, before, after).rows()
    return pd.DataFrame(rows)


def scores(pred: pd.DataFrame) -> pd.DataFrame:
    """MAPE and Pearson r per figure, before and after, over the held-out points (else the fit points)."""
    out = []
    for held in (True, False):
        sub = pred[pred["held_out"] == held]
        for fig, target in FIGURES:
            f = sub[sub["figure"] == fig]
            if f.empty:
                continue
            row: dict[str, Any] = {
                "points": "held-out" if held else "fit",
                "figure": fig,
                "n": len(f),
                "target": target,
            }
            for when in ("before", "after"):
                row[f"mape_{when}"] = float(np.mean(np.abs(f[f"error_{when}"])))
                row[f"r_{when}"] = _pearson(f["live"].to_numpy(float), f[when].to_numpy(float))
            out.append(row)
    return pd.DataFrame(out)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN with fewer than 3 points or no spread (it says nothing there)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])
