"""One drift run: probe the deployed graph, compare, retune when it matters, keep the record.

Verdicts: ``steady`` (nothing moved beyond the threshold outside the noise), ``drifted`` (something
did; a retune ran unless told not to). The exit code distinguishes "a better topology is available"
(`autotune.errors.EXIT_IMPROVEMENT_AVAILABLE`) from everything else a scheduled job can ignore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotune.drift.history import append_history, read_history, write_report
from autotune.drift.prediction import FIGURES, Prediction
from autotune.drift.probe import ProbeResult, probe
from autotune.drift.retune import RetuneResult, retune
from autotune.drift.traffic import traffic_drift, with_traffic
from autotune.drift.verdict import FigureDrift, compare_all
from autotune.intervals import Interval
from autotune.traces.spec import TraceSpec

RETUNE_MODES = ("auto", "always", "never")
LABELS = {
    "ttft_p50_ms": "TTFT P50",
    "ttft_p99_ms": "TTFT P99",
    "itl_mean_ms": "ITL mean",
    "itl_p99_ms": "ITL P99",
    "output_tok_s": "output tok/s",
    "input_tokens_mean": "traffic: mean input tokens",
    "output_tokens_mean": "traffic: mean output tokens",
    "rate_rps": "traffic: request rate (req/s)",
}
AGAINST = {
    "prediction": "the study predicted",
    "last_probe": "the last probe measured",
    "assumed_traffic": "the study's workload assumed",
}


@dataclass(frozen=True)
class DriftOptions:
    threshold: float = 0.15  # relative change that counts as drift (beyond the noise too)
    min_gain: float = 0.05  # a retune's gain counts only when its whole interval clears 1 + min_gain
    retune: str = "auto"  # auto: only after drift; always; never
    trials: int = 60
    seed: int = 0
    requests: int | None = None  # probe length before the adaptive rule extends it
    traffic: TraceSpec | None = None  # a window of the real traffic, held against the study's workload


def measured_figures(result: ProbeResult) -> dict[str, Interval]:
    return {f: result.metrics.interval(f) for f in FIGURES}


def _last_probe(history: list[dict[str, Any]], topology: str) -> dict[str, Interval] | None:
    """The previous run's measured figures for the same graph (a change of graph starts afresh)."""
    for h in reversed(history):
        if h.get("topology") == topology and isinstance(h.get("measured"), dict):
            m = h["measured"]
            return {f: Interval(*map(float, m[f])) for f in FIGURES if f in m}
    return None


def _ci(lo: float, hi: float) -> str:
    return f"95 % CI {lo:.4g}–{hi:.4g}" if math.isfinite(lo) and math.isfinite(hi) else "no interval"


def sentence(d: FigureDrift, threshold: float) -> str:
    """One figure's comparison in words, with both intervals and what it means."""
    ref = AGAINST[d.against]
    head = (
        f"{LABELS[d.figure]}: measured {d.measured:.4g} ({_ci(d.measured_lo, d.measured_hi)}); "
        f"{ref} {d.reference:.4g} ({_ci(d.reference_lo, d.reference_hi)}): {d.change * 100:+.1f} %"
    )
    if d.basis != "intervals":
        return f"{head} — not judged: no interval on one side (too few requests for this figure's tail)."
    if d.drifted:
        return f"{head} — drift ({'worse' if d.worse else 'better'}), beyond ±{threshold:.0%} and outside the noise."
    if abs(d.change) > threshold:
        return f"{head} — beyond ±{threshold:.0%} but inside the noise: no drift."
    return f"{head} — within ±{threshold:.0%}."


def drift_check(
    prediction: Prediction, url: str, history_dir: Path, retune_dir: Path, options: DriftOptions
) -> dict[str, Any]:
    """Run the whole check and return its record (also appended to the history)."""
    now = datetime.now(UTC)
    history = read_history(history_dir)
    topo = str(prediction.topology)
    result = probe(
        prediction.profile,
        url,
        concurrency=prediction.concurrency,
        gpus=prediction.topology.gpus,
        seed=options.seed + len(history),  # a fresh stream each run, reproducible from the history
        requests=options.requests,
    )
    measured = measured_figures(result)
    figures = compare_all("prediction", prediction.figures, measured, options.threshold)
    last = _last_probe(history, topo)
    if last is not None:
        figures += compare_all("last_probe", last, measured, options.threshold)
    traffic: dict[str, Any] | None = None
    retune_profile = prediction.profile
    if options.traffic is not None:
        moved, traffic = traffic_drift(prediction.profile, options.traffic, options.threshold)
        figures += moved
        if any(d.drifted for d in moved):  # retune on the traffic as it is now
            retune_profile = with_traffic(prediction.profile, options.traffic)
    drifted = any(d.drifted for d in figures)
    verdict = "drifted" if drifted else "steady"
    rt: RetuneResult | None = None
    if options.retune == "always" or (options.retune == "auto" and drifted):
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        rt = retune(
            retune_profile,
            prediction.topology,
            retune_dir / f"retune-{stamp}",
            trials=options.trials,
            seed=options.seed,
            min_gain=options.min_gain,
        )
    words = [sentence(d, options.threshold) for d in figures]
    words.append(
        f"Verdict: {verdict}."
        + (f" Retune: {rt.verdict} ({rt.gain_text})." if rt else " No retune (nothing moved)." if not drifted else "")
    )
    record: dict[str, Any] = {
        "time_utc": now.isoformat(timespec="seconds"),
        "study": str(prediction.study_dir),
        "topology": topo,
        "concurrency": prediction.concurrency,
        "frontend": url,
        "threshold": options.threshold,
        "verdict": verdict,
        "improvement_available": bool(rt and rt.improvement_available),
        "measured": {f: [i.value, i.lo, i.hi] for f, i in measured.items()},
        "probe": {"sent": result.sent, "failed": result.failed, **_probe_meta(result.meta)},
        "traffic": traffic,
        "figures": [d.as_dict() for d in figures],
        "retune": rt.as_dict() if rt else None,
        "sentences": words,
    }
    append_history(history_dir, record)
    write_report(history_dir, [*history, record])
    return record


def _probe_meta(meta: dict[str, Any]) -> dict[str, Any]:
    keep = ("stop_reason", "requests_run", "converged", "precision_ratio", "limiting_figure")
    return {k: meta[k] for k in keep if k in meta}
