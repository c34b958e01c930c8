"""Did the deployed graph move? Each figure against the study's prediction and against the last probe.

A figure has drifted when both hold: its relative change is beyond the threshold, and the change is
outside the noise (the measured and the reference intervals do not overlap). A change inside the
noise is no change, whatever its size. A figure without an interval on either side (a P99 from
fewer requests than a tail interval needs) is reported but not judged (``basis`` says so): a
decision is never taken on a difference whose noise is unknown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from autotune.intervals import Interval

# which way is worse: latency up, throughput down
HIGHER_IS_WORSE: dict[str, bool] = {
    "ttft_p50_ms": True,
    "ttft_p99_ms": True,
    "itl_mean_ms": True,
    "itl_p99_ms": True,
    "output_tok_s": False,
    # traffic (a trace window against the workload the study assumed): more of any is more work
    "input_tokens_mean": True,
    "output_tokens_mean": True,
    "rate_rps": True,
}


@dataclass(frozen=True)
class FigureDrift:
    figure: str
    against: str  # "prediction" (the study), "last_probe" (the previous drift run) or "assumed_traffic"
    reference: float
    reference_lo: float
    reference_hi: float
    measured: float
    measured_lo: float
    measured_hi: float
    change: float  # (measured − reference) / reference
    significant: bool  # the intervals do not overlap
    basis: str  # "intervals", or "no interval: not judged" (one side has none)
    drifted: bool
    worse: bool  # drifted, in the direction that hurts

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(i: Interval) -> bool:
    return math.isfinite(i.lo) and math.isfinite(i.hi)


def figure_drift(figure: str, against: str, reference: Interval, measured: Interval, threshold: float) -> FigureDrift:
    ref, got = reference.value, measured.value
    change = (got - ref) / ref if math.isfinite(ref) and ref != 0 and math.isfinite(got) else math.nan
    if _finite(reference) and _finite(measured):
        basis, significant = "intervals", measured.lo > reference.hi or measured.hi < reference.lo
    else:
        basis, significant = "no interval: not judged", False
    drifted = significant and math.isfinite(change) and abs(change) > threshold
    worse = drifted and (change > 0) == HIGHER_IS_WORSE[figure]
    return FigureDrift(
        figure,
        against,
        ref,
        reference.lo,
        reference.hi,
        got,
        measured.lo,
        measured.hi,
        change,
        significant,
        basis,
        drifted,
        worse,
    )


def compare_all(
    against: str, reference: dict[str, Interval], measured: dict[str, Interval], threshold: float
) -> list[FigureDrift]:
    return [
        figure_drift(f, against, reference[f], measured[f], threshold)
        for f in HIGHER_IS_WORSE
        if f in reference and f in measured
    ]
