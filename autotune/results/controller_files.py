"""The controller's part of the results directory: its verdict, its tests' tables and summary keys.

presets.csv      per topology × regime: the preset, keep-the-default or not, and the cells behind it
spike.csv        per topology × policy × phase: figures with intervals over seeds
spike_seeds.csv  the same per seed;  spike_effect.csv  adaptive / static per phase (paired over seeds)
detector.csv     per topology × schedule × seed: false positives, overload episodes missed, detection delay
transients.csv   per switch: TTFT P99 before, after, and static after;  sensitivity.csv  θ1, θ2, α, dwell
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from autotune.adaptive import ControllerExperiment
from autotune.controller_eval import SpikeReport
from autotune.results.files import write_csv

FILES = (
    "presets.csv",
    "spike.csv",
    "spike_seeds.csv",
    "spike_effect.csv",
    "detector.csv",
    "transients.csv",
    "sensitivity.csv",
)


def verdict(e: ControllerExperiment) -> dict[str, Any]:
    """What the controller recommends for the topology, in words and with the evidence per regime."""
    if e.keep_default:
        text = (
            "keep Dynamo's default router (τ = 0, ω = 1) in every regime: no (τ, ω) preset was significantly "
            "better than the default in any regime measured"
        )
    else:
        moved = [r for r, c in e.choices.items() if not c.keep_default]
        text = f"switch presets by regime: significantly better than the default in {', '.join(moved)}"
    return {
        "keep_default": e.keep_default,
        "recommendation": text,
        "evidence": [c.as_dict() for c in e.choices.values()],
    }


def _tagged(df: pd.DataFrame | None, topology: str, role: str) -> pd.DataFrame | None:
    return None if df is None else df.assign(topology=topology, role=role)


def write_controller_files(out: Path, runs: list[tuple[str, str, ControllerExperiment]]) -> None:
    """``runs``: (topology, role, experiment) for the recommended topology and the baseline."""
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in FILES}
    for topo, role, e in runs:
        s = e.spike
        tables["presets.csv"].append(
            pd.DataFrame([_flat_choice(c.as_dict()) for c in e.choices.values()]).assign(topology=topo, role=role)
        )
        for name, df in (
            ("spike.csv", s.phases),
            ("spike_seeds.csv", s.per_seed),
            ("spike_effect.csv", s.effect),
            ("detector.csv", s.detector),
            ("transients.csv", s.transients),
            ("sensitivity.csv", s.sensitivity),
        ):
            t = _tagged(df, topo, role)
            if t is not None:
                tables[name].append(t)
    for name, parts in tables.items():
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        write_csv(out / name, frame)


def _flat_choice(d: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in d.items() if k not in ("default_cell", "best_cell")}
    for prefix in ("default_cell", "best_cell"):
        for k, v in (d.get(prefix) or {}).items():
            row[f"{prefix}_{k}"] = v
    return row


def _pair(lo: float, hi: float) -> list[float] | None:
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) else None


def overload_effect(s: SpikeReport) -> dict[str, Any]:
    """Adaptive / static over the overloaded phases (the paper's saturated comparison, paper.md §7)."""
    over = s.effect[s.effect["load_x_capacity"] > 1]
    out: dict[str, Any] = {}
    for _, r in over.iterrows():
        for f in ("poa_hat", "ttft_p99_ms", "output_tok_s"):
            key = f"{r['phase']}_{f}_adaptive_over_static"
            out[key] = r[f"{f}_ratio"]
            out[f"{key}_ci"] = _pair(r[f"{f}_ratio_lo"], r[f"{f}_ratio_hi"])
            out[f"{key}_significant"] = bool(r[f"{f}_ratio_significant"])
    return out


def controller_summary(e: ControllerExperiment) -> dict[str, Any]:
    """summary.json's ``controller`` block for one topology."""
    s = e.spike
    out: dict[str, Any] = {
        "theta1_ms": e.settings.theta1_ms,
        "theta2_ms": e.settings.theta2_ms,
        "keep_default": e.keep_default,
        "recommendation": verdict(e)["recommendation"],
        "load_plan": s.plan.as_dict(),
        "seeds": len(s.seeds),
        "all_presets_default": s.replayed,
        "adaptive_runs": s.adaptive_runs,
        "adaptive_runs_simulated": s.adaptive_runs_simulated,
        "detector": s.detector_summary,
        "overload": overload_effect(s),
        "switch_transients": s.transient_summary.to_dict(orient="records"),
    }
    if s.sensitivity is not None and len(s.sensitivity):
        col = s.sensitivity["overload_ttft_p99_ratio"]
        out["sensitivity_overload_ttft_p99_ratio_range"] = [float(col.min()), float(col.max())]
    return out
