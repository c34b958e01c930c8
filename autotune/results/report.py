"""The short human-readable ``report.md`` of a study."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from autotune.results.outcome import Outcome


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _table(df: pd.DataFrame, cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_f(r[c]) for c in cols) + " |\n" for _, r in df.iterrows())


def render_report(o: Outcome, rec: dict[str, Any], trials: pd.DataFrame, front: pd.DataFrame) -> str:
    p = o.profile
    kind = "predicted by the simulator" if o.prediction else f"measured on {o.backend.get('backend')}"
    pred = rec.get("predicted") or rec.get("measured") or {}
    lines = [
        f"# autotune report: {p.name}",
        "",
        f"Recommended topology **{rec['topology']['string']}** ({rec['topology']['gpus']} GPUs), {kind}.",
        f"Operating point: {rec['operating_point']}. PoA-hat {_f(pred.get('poa_hat'))}, "
        f"{_f(pred.get('tok_s_per_gpu'))} output tok/s per GPU, TTFT P99 {_f(pred.get('ttft_p99_ms'))} ms, "
        f"ITL P99 {_f(pred.get('itl_p99_ms'))} ms; SLOs {'met' if o.slo_met else 'NOT met by any trial'}.",
        "",
    ]
    bc = rec.get("baseline_comparison")
    if bc:
        lines += [
            "## Against the default",
            "",
            f"Baseline {bc['baseline']} (Dynamo default router): PoA-hat {_f(bc['baseline_poa_hat'])}, "
            f"{_f(bc['baseline_tok_s_per_gpu'])} tok/s/GPU, TTFT P99 {_f(bc['baseline_ttft_p99_ms'])} ms.",
            f"The recommendation has {_f(bc['poa_hat_ratio'])}x lower PoA-hat and {_f(bc['tok_s_per_gpu_ratio'])}x "
            f"the throughput per GPU.",
            "",
        ]
    c = rec["controller"]
    lines += [
        "## Adaptive controller",
        "",
        f"Baseline TTFT P99 {_f(c['baseline_ttft_p99_ms'])} ms; θ1 = {_f(c['theta1_ms'])} ms "
        f"({c['theta1_x_baseline']}x), θ2 = {_f(c['theta2_ms'])} ms ({c['theta2_x_baseline']}x); EWMA α "
        f"{c['ewma_alpha']}, dwell {c['dwell_s']} s, hysteresis {c['hysteresis']}.",
        "",
        "| regime | τ | ω |",
        "|---|---|---|",
        *[f"| {k} | {v['temperature']:g} | {v['overlap_weight']:g} |" for k, v in c["presets"].items()],
        "",
        "Load ramp and spike, static default routing vs the controller (per phase):",
        "",
        _table(o.spike.phases, ["policy", "phase", "requests", "poa_hat", "ttft_p99_ms", "output_tok_s"]),
        f"Router switches during the adaptive run: {len(o.spike.switches)}.",
        "",
        *_baseline_spike(o, rec),
        "## Pareto front",
        "",
        _table(front, ["number", "topology", "gpus", "poa_hat", "tok_s_per_gpu", "ttft_p99_ms", "itl_p99_ms"])
        if len(front)
        else "No trial met the SLOs.\n",
        "## Trials",
        "",
        ", ".join(f"{str(k).lower()}: {v}" for k, v in trials["state"].value_counts().items()),
        "",
        "Files: `recommended.yaml`, `dgd.yaml`, `trials.csv`/`trials.parquet`, `points.csv`, `pareto.csv`, "
        "`heatmaps.csv`, `spike.csv`, `summary.json`, `plots/`.",
        "",
    ]
    return "\n".join(lines)


def _baseline_spike(o: Outcome, rec: dict[str, Any]) -> list[str]:
    b = rec.get("baseline_adaptive_vs_static")
    if not b or o.baseline_spike is None:
        return []
    presets = ", ".join(
        f"{k} τ={v['temperature']:g} ω={v['overlap_weight']:g}" for k, v in b["controller"]["presets"].items()
    )
    return [
        f"The same experiment on the baseline {b['topology']} (its own controller: {presets}):",
        "",
        _table(o.baseline_spike.phases, ["policy", "phase", "requests", "poa_hat", "ttft_p99_ms", "output_tok_s"]),
        f"Router switches during the adaptive run: {len(o.baseline_spike.switches)}.",
        "",
    ]
