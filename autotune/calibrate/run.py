"""``calibrate``: records in, fitted constants, overlay and report out (docs/calibrate.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from autotune.calibrate.aiperf import Deployment
from autotune.calibrate.engine import EngineConstants
from autotune.calibrate.fit import HostFit, ParamFit, fit_engine, fit_host
from autotune.calibrate.heldout import predict, scores
from autotune.calibrate.inputs import load_points
from autotune.calibrate.overlay import build_overlay
from autotune.calibrate.points import LivePoint
from autotune.calibrate.states import frame, samples
from autotune.errors import InputError
from autotune.profile import Profile


@dataclass
class Calibration:
    profile: Profile
    points: list[LivePoint]
    held_out: list[str]
    engine: EngineConstants
    params: list[ParamFit]
    host: HostFit
    overlay: dict[str, Any]
    samples: pd.DataFrame
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)

    def params_frame(self) -> pd.DataFrame:
        rows = [p.as_dict() for p in self.params] + [self.host.request_ms.as_dict(), self.host.input_token_us.as_dict()]
        return pd.DataFrame(rows)


def choose_held_out(points: list[LivePoint], root: Path, names: list[str]) -> list[str]:
    """The points named by ``--holdout`` (directory names under ``root``); by default the last of three or
    more, so some point is always predicted without having been fitted."""
    rel = {str(Path(p.name).relative_to(root)): p.name for p in points}
    if names:
        unknown = [n for n in names if n.strip("/") not in rel]
        if unknown:
            raise InputError(f"--holdout: no point {unknown[0]!r} under {root} (points: {', '.join(sorted(rel))})")
        out = [rel[n.strip("/")] for n in names]
        if len(out) == len(points):
            raise InputError("--holdout: every point is held out; nothing is left to fit")
        return out
    return [points[-1].name] if len(points) >= 3 else []


def calibrate(
    profile: Profile,
    root: Path,
    *,
    holdout: list[str] | None = None,
    boot: int = 50,
    seed: int | None = None,
    predict_points: bool = True,
    aiperf: Deployment | None = None,
    hold_out_one: bool = True,
) -> Calibration:
    """Fit on the points not held out; predict every point before and after.

    ``hold_out_one=False``: with no ``holdout`` named, fit on every point (the prescreen wants all of them).
    """
    seed = profile.seed if seed is None else seed
    points = load_points(Path(root), profile, aiperf)
    held = choose_held_out(points, Path(root), holdout or []) if holdout or hold_out_one else []
    fit_on = [samples(p) for p in points if p.name not in held]
    level = profile.measurement.ci_level
    engine, params = fit_engine(profile, fit_on, boot=boot, seed=seed, level=level)
    host = fit_host(profile, fit_on, boot=max(boot, 100), seed=seed, level=level)
    overlay = build_overlay(profile, engine, params, host)
    cal = Calibration(profile, points, held, engine, params, host, overlay, frame(fit_on))
    if predict_points:
        cal.predictions = predict(profile, points, set(held), overlay, seed)
        cal.scores = scores(cal.predictions)
    return cal
