"""What the last study predicted for the graph it recommended, read back from its results directory."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from autotune.errors import InputError
from autotune.intervals import Interval
from autotune.profile import Profile, load_profile
from autotune.topology import Topology, parse_topology

# the figures a probe measures and a study predicts, compared one by one
FIGURES: tuple[str, ...] = ("ttft_p50_ms", "ttft_p99_ms", "itl_mean_ms", "itl_p99_ms", "output_tok_s")


@dataclass(frozen=True)
class Prediction:
    """The study's figures for its recommended topology at its operating point (the concurrency it chose)."""

    study_dir: Path
    profile: Profile
    topology: Topology
    concurrency: int
    figures: dict[str, Interval]
    backend: str  # where the study measured: "sim" (a prediction) or a live backend


def _read(path: Path) -> object:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: missing (is --study the results directory of an `autotune run`?)") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: unreadable: {exc}") from None


def load_prediction(study_dir: Path) -> Prediction:
    """Read summary.json, trials.csv, points.csv and profile.resolved.yaml of one results directory."""
    summary = _read(study_dir / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("recommended"), str):
        raise InputError(f"{study_dir / 'summary.json'}: no 'recommended' topology (the study found none)")
    rec = summary["recommended"]
    topology = parse_topology(rec, flag=f"{study_dir / 'summary.json'}: recommended")
    profile = load_profile(study_dir / "profile.resolved.yaml")
    trials = _read(study_dir / "trials.csv")
    points = _read(study_dir / "points.csv")
    assert isinstance(trials, pd.DataFrame) and isinstance(points, pd.DataFrame)
    for name, frame, cols in (
        ("trials.csv", trials, ("number", "topology", "operating_concurrency")),
        ("points.csv", points, ("trial", "concurrency", *FIGURES)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise InputError(f"{study_dir / name}: missing columns {', '.join(missing)}")
    row = trials[trials["topology"] == rec]
    if row.empty or not math.isfinite(float(row.iloc[0]["operating_concurrency"])):
        raise InputError(f"{study_dir / 'trials.csv'}: no operating concurrency for the recommended {rec}")
    number, concurrency = int(row.iloc[0]["number"]), int(row.iloc[0]["operating_concurrency"])
    point = points[(points["trial"] == number) & (points["concurrency"] == concurrency)]
    if point.empty:
        raise InputError(f"{study_dir / 'points.csv'}: no point of trial {number} at concurrency {concurrency}")
    p = point.iloc[-1]
    figures = {
        f: Interval(float(p[f]), float(p.get(f"{f}_lo", math.nan)), float(p.get(f"{f}_hi", math.nan))) for f in FIGURES
    }
    return Prediction(study_dir, profile, topology, concurrency, figures, str(summary.get("backend", "sim")))
