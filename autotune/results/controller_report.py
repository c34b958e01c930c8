"""report.md's controller section: the verdict with its evidence, then each test with its intervals.

Claims follow the intervals: a preset, an adaptive gain, a transient or a sensitivity is stated as a
difference only when its interval excludes "no difference"; otherwise the report says so.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from autotune.adaptive import ControllerExperiment
from autotune.results import ci
from autotune.results.controller_files import verdict


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _iv(r: pd.Series | dict[str, Any], c: str) -> str:
    return ci.fmt_interval(r[c], r.get(f"{c}_lo", math.nan), r.get(f"{c}_hi", math.nan))


def _table(df: pd.DataFrame, cols: list[str]) -> list[str]:
    head = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    body = [
        "| " + " | ".join(_iv(r, c) if f"{c}_lo" in df.columns else _f(r[c]) for c in cols) + " |"
        for _, r in df.iterrows()
    ]
    return head + body + [""]


def _cell(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    poa = ci.fmt_interval(d["poa_hat"], d["poa_hat_lo"], d["poa_hat_hi"])
    ttft = ci.fmt_interval(d["ttft_p99_ms"], d["ttft_p99_ms_lo"], d["ttft_p99_ms_hi"])
    return f"τ={d['temperature']:g} ω={d['overlap_weight']:g}: PoA-hat {poa}, TTFT P99 {ttft} ms"


def _rate(ds: dict[str, Any], key: str) -> str:
    if key not in ds:
        return "-"
    lo, hi = ds.get(f"{key}_ci") or [math.nan, math.nan]
    return f"{ds[key]:.2f} [{lo:.2f}, {hi:.2f}]"


def controller_section(e: ControllerExperiment, title: str, level: str) -> list[str]:
    """The controller of one topology: verdict and evidence, load plan, ramp/spike, detector, transients, sensitivity."""
    s, v, c = e.spike, verdict(e), e.settings
    p, rs = s.plan, s.settings
    lines = [
        f"### {title}",
        "",
        f"**Recommendation: {v['recommendation']}.**",
        "",
        f"θ1 = {_f(c.theta1_ms)} ms ({c.theta1_x:g}× the baseline TTFT P99 {_f(c.baseline_ttft_p99_ms)} ms), "
        f"θ2 = {_f(c.theta2_ms)} ms ({c.theta2_x:g}×), EWMA α {c.ewma_alpha:g}, hysteresis {c.hysteresis:g}.",
        "",
        "| regime | preset τ | preset ω | keep default | why | default cell | best other cell |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {ch['regime']} | {ch['temperature']:g} | {ch['overlap_weight']:g} | {'yes' if ch['keep_default'] else 'no'} "
            f"| {ch['reason']} | {_cell(ch['default_cell'])} | {_cell(ch['best_cell'])} |"
            for ch in v["evidence"]
        ],
        "",
        "Each grid runs every (τ, ω) cell on the same requests (same seed and count: common random numbers); "
        "a cell replaces the default only when its intervals do not overlap the default's.",
        "",
        f"Load plan: capacity {_f(p.capacity_rps)} req/s ({p.capacity_source}), below-knee load "
        f"{_f(p.below_knee_rps)} req/s, phases of {_f(p.phase_s)} s = {p.phase_s / p.mean_e2e_s:.1f}× the mean "
        f"E2E below the knee ({_f(p.mean_e2e_s)} s); {len(s.seeds)} seeds; controller on the experiment's clock: "
        f"update every {_f(rs.interval_s)} s, dwell {_f(rs.dwell_s)} s. Adaptive runs simulated: "
        f"{s.adaptive_runs_simulated} of {s.adaptive_runs}; the others set the same routers as a run already made "
        "(watching it), so they are that run."
        + (
            " Every preset is the default, so the controller cannot change a run and the two policies' figures "
            "are identical by construction."
            if s.replayed
            else ""
        ),
        "",
        f"Ramp past the capacity and spike, per phase (mean over seeds, {level} CI):",
        "",
        *_table(
            s.phases,
            ["policy", "phase", "load_x_capacity", "requests", "mean_e2e_s", "poa_hat", "ttft_p99_ms", "output_tok_s"],
        ),
        f"Adaptive / static per phase, seed by seed on the same arrivals ({level} CI; significant when it excludes 1):",
        "",
        *_table(s.effect, ["phase", "poa_hat_ratio", "ttft_p99_ms_ratio", "output_tok_s_ratio"]),
    ]
    ds = s.detector_summary
    lines += [
        f"Detector ({level} exact binomial intervals): false-positive rate (runs with any entry into SATURATED "
        f"below the knee) {_rate(ds, 'calm_false_positive_rate')} on load fluctuating below the knee, "
        f"{_rate(ds, 'spike_false_positive_rate')} on the ramp before it crosses; false-negative rate (overload "
        f"episodes longer than the dwell never flagged) {_rate(ds, 'spike_false_negative_rate')}; detection delay "
        f"{_rate(ds, 'spike_detection_delay_s')} s after the load passes the capacity.",
        "",
    ]
    if len(s.transient_summary):
        lines += [
            "TTFT P99 in the window after each switch over the static run's same window (geometric mean over switches):",
            "",
            *_table(s.transient_summary, ["switch", "count", "after_vs_static"]),
        ]
    else:
        lines += ["No switch happened in the ramp-and-spike runs: no transient to measure.", ""]
    if s.sensitivity is not None:
        lines += [
            "Sensitivity, one parameter at a time (outcome: adaptive / static TTFT P99 and output tok/s over the "
            "overloaded phases, over seeds):",
            "",
            *_table(
                s.sensitivity,
                [
                    "parameter",
                    "value",
                    "overload_ttft_p99_ratio",
                    "overload_output_tok_s_ratio",
                    "switches_mean",
                    "calm_false_positive_runs",
                    "missed_episodes",
                ],
            ),
        ]
    return lines
