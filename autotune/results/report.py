"""The short human-readable ``report.md`` of a study: every figure with its interval, every claim with how sure it is.

Figures are written ``value [lo, hi]`` (``autotune.results.ci``); a comparison with the baseline is
claimed only when its ratio's interval excludes 1, and otherwise reported as no significant difference.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial

from autotune.intervals import Interval
from autotune.results import ci
from autotune.results.controller_report import controller_section
from autotune.results.outcome import Outcome
from autotune.search.trials import objective_intervals, points, regret_interval

# trial-level figures that are the maximum over the operating points (``scoring.score_sweep``): the
# point a figure comes from carries its interval
_FROM_POINT = ("ttft_p99_ms", "itl_p99_ms", "output_tok_s")


def trial_intervals(t: FrozenTrial) -> dict[str, Interval]:
    """PoA-hat, routing regret, tok/s per GPU, TTFT P99, ITL P99 and output tok/s of a completed trial at
    its operating point, each with its confidence interval (NaN bounds: none known)."""
    poa, tput = objective_intervals(t)
    out = {"poa_hat": poa, "routing_regret": regret_interval(t), "tok_s_per_gpu": tput}
    pts = points(t)
    for name in _FROM_POINT:
        v = t.user_attrs.get(name)
        iv = Interval(math.nan if v is None else v, math.nan, math.nan)
        for p in pts:
            if v is not None and getattr(p.metrics, name) == v:
                iv = p.metrics.interval(name)
                break
        out[name] = iv
    return out


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _cell(r: pd.Series, c: str) -> str:
    if f"{c}_lo" in r.index and f"{c}_hi" in r.index:
        return ci.fmt_interval(r[c], r[f"{c}_lo"], r[f"{c}_hi"])
    return _f(r[c])


def _table(df: pd.DataFrame, cols: list[str], level: str | None = None) -> str:
    """Markdown table; a column with ``<col>_lo``/``<col>_hi`` beside it is written ``value [lo, hi]``."""
    heads = [f"{c} [{level} CI]" if level and f"{c}_lo" in df.columns else c for c in cols]
    head = "| " + " | ".join(heads) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_cell(r, c) for c in cols) + " |\n" for _, r in df.iterrows())


def _ratio_claim(what: str, bc: dict[str, Any], key: str, level: str, lower: bool) -> str:
    """How sure a comparison with the baseline is, in words.

    ``lower``: the ratio is baseline / recommended of a figure where lower is better ("1.25x lower"),
    else recommended / baseline ("1.83x the tok/s per GPU of the baseline").
    """
    r, pair, sig = bc.get(f"{key}_ratio"), bc.get(f"{key}_ratio_ci"), bc.get(f"{key}_ratio_significant")
    if r is None or not math.isfinite(r):
        return f"{what}: no comparison (a figure is missing)."
    if not pair:
        return f"{what}: ratio {r:.2f}, without an interval (too few batches): not claimed as a difference."
    lo, hi = pair
    if not sig:
        return f"no significant difference from the baseline in {what} (ratio {r:.2f}, {level} CI {lo:.2f}–{hi:.2f})."
    if not lower:
        return f"{r:.2f}× the {what} of the baseline ({level} CI {lo:.2f}–{hi:.2f}×)."
    if r >= 1:
        return f"{r:.2f}× lower {what} than the baseline ({level} CI {lo:.2f}–{hi:.2f}×)."
    return f"{1 / r:.2f}× higher {what} than the baseline ({level} CI {1 / hi:.2f}–{1 / lo:.2f}×)."


def _q(d: dict[str, Any], name: str, prefix: str = "") -> str:
    """A quoted figure of ``recommended.yaml`` (``name`` and ``name_ci``) as ``value [lo, hi]``."""
    pair = d.get(f"{prefix}{name}_ci") or [math.nan, math.nan]
    return ci.fmt_interval(d.get(f"{prefix}{name}"), *pair)


def render_report(o: Outcome, rec: dict[str, Any], trials: pd.DataFrame, front: pd.DataFrame) -> str:
    p = o.profile
    level = ci.level_text(p.measurement.ci_level)
    kind = "predicted by the simulator" if o.prediction else f"measured on {o.backend.get('backend')}"
    pred = rec.get("predicted") or rec.get("measured") or {}
    lines = [
        f"# autotune report: {p.name}",
        "",
        f"Recommended topology **{rec['topology']['string']}** ({rec['topology']['gpus']} GPUs), {kind}.",
        f"Operating point: {rec['operating_point']}. PoA-hat {_q(pred, 'poa_hat')} "
        f"(routing regret {_q(pred, 'routing_regret')}; docs/poa-hat.md), "
        f"{_q(pred, 'tok_s_per_gpu')} output tok/s per GPU, TTFT P99 {_q(pred, 'ttft_p99_ms')} ms, "
        f"ITL P99 {_q(pred, 'itl_p99_ms')} ms; SLOs {'met' if o.slo_met else 'NOT met by any trial'}.",
        *(
            [
                f"Tied within noise with {', '.join(o.ties)} (no significant difference in PoA-hat or tok/s per "
                "GPU): the tie goes to fewer GPUs, then fewer workers, then the shape's name (docs/measurement.md)."
            ]
            if o.ties
            else []
        ),
        "",
        f"How the figures are measured: each comes from the steady state of its load point (warm-up and "
        f"drain cut off) and is written `value [lo, hi]`, its {level} confidence interval by batch means; "
        f"a difference is claimed only when the intervals put it beyond the noise (docs/measurement.md).",
        "",
    ]
    bc = rec.get("baseline_comparison")
    if bc:
        lines += [
            "## Against the default",
            "",
            f"Baseline {bc['baseline']} (Dynamo default router): PoA-hat {_q(bc, 'poa_hat', 'baseline_')}, "
            f"{_q(bc, 'tok_s_per_gpu', 'baseline_')} tok/s/GPU, TTFT P99 {_q(bc, 'ttft_p99_ms', 'baseline_')} ms.",
            "The recommendation, at the operating point:",
            "",
            f"- {_ratio_claim('tok/s per GPU', bc, 'tok_s_per_gpu', level, lower=False)}",
            f"- {_ratio_claim('PoA-hat', bc, 'poa_hat', level, lower=True)}",
            f"- {_ratio_claim('TTFT P99', bc, 'ttft_p99', level, lower=True)}",
            "",
            "A ratio's interval combines both trials' intervals (delta method); it is significant when it excludes 1.",
            "",
        ]
    lines += [
        "## Adaptive controller",
        "",
        *controller_section(o.experiment, f"{rec['topology']['string']} (recommended)", level),
    ]
    if o.baseline_experiment is not None and o.baseline is not None:
        lines += controller_section(o.baseline_experiment, f"{o.baseline.user_attrs.get('topology')} (baseline)", level)
    lines += [
        "## Pareto front",
        "",
        _table(_with_point_intervals(o, front), FRONT_COLUMNS, level) if len(front) else "No trial met the SLOs.\n",
        "Trials whose intervals overlap on both objectives are not distinguishable by this study.",
        "",
        "## Trials",
        "",
        ", ".join(f"{str(k).lower()}: {v}" for k, v in trials["state"].value_counts().items()),
        "",
        "Files: `recommended.yaml`, `dgd.yaml`, `trials.csv`/`trials.parquet`, `points.csv`, `pareto.csv`, "
        "`heatmaps.csv`, `presets.csv`, `spike.csv`/`spike_seeds.csv`/`spike_effect.csv`, `detector.csv`, "
        "`transients.csv`, `sensitivity.csv`, `summary.json`, `plots/` (error bars: the intervals; hatched heatmap cells: "
        "no significant difference in PoA-hat from Dynamo's default τ = 0, ω = 1). Intervals are in the files as "
        "`<figure>_lo`/`<figure>_hi` columns and `<figure>_ci: [lo, hi]` fields.",
        "",
    ]
    return "\n".join(lines)


FRONT_COLUMNS = [
    "number",
    "topology",
    "gpus",
    "poa_hat",
    "routing_regret",
    "tok_s_per_gpu",
    "ttft_p99_ms",
    "itl_p99_ms",
]
SPIKE_COLUMNS = ["policy", "phase", "requests", "poa_hat", "routing_regret", "ttft_p99_ms", "output_tok_s"]


def _with_point_intervals(o: Outcome, front: pd.DataFrame) -> pd.DataFrame:
    """The front with the TTFT P99 and ITL P99 intervals of each trial's operating point."""
    by_number = {t.number: t for t in o.study.get_trials(deepcopy=False)}
    df = front.copy()
    for name in ("ttft_p99_ms", "itl_p99_ms"):
        ivs = [trial_intervals(by_number[int(n)])[name] for n in df["number"]]
        df[f"{name}_lo"] = [iv.lo for iv in ivs]
        df[f"{name}_hi"] = [iv.hi for iv in ivs]
    return df
