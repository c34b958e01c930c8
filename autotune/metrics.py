"""Summary figures of one load point, from its steady state, each with a confidence interval.

The same function scores simulated and live points, so sim-vs-live comparisons are apples to
apples. Definitions follow aiperf where a user will compare with it: TTFT = first token received
- request sent; ITL = gaps between streamed tokens (token-weighted); E2E = last token - sent;
output tok/s = output tokens of requests *completing* in the window / window duration. The window
is the steady state (``autotune.steady``); intervals are batch means (``autotune.intervals``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from autotune.intervals import NAN, Interval, batch_index, independent_batches, quantile_interval, ratio_interval
from autotune.intervals import weighted_quantile as weighted_quantile
from autotune.records import PointRun
from autotune.steady import steady_window

# figures that carry an interval (``<name>_lo`` / ``<name>_hi``) and the relative precision class
# the run-length rule holds them to: "centre" (P50s and means), "tail" (P99s), or "report" (shown
# with its interval, not a target of its own: tok/s per GPU is output tok/s scaled; req/s counts
# completions, whose per-batch count swings with request lengths while the token rate does not)
HEADLINE = {
    "ttft_p50_ms": "centre",
    "ttft_p99_ms": "tail",
    "itl_mean_ms": "centre",
    "itl_p99_ms": "tail",
    "e2e_p99_ms": "tail",
    "output_tok_s": "centre",
    "tok_s_per_gpu": "report",
    "req_s": "report",
    "prefix_hit_rate": "centre",
}
CI_LEVEL = 0.95
MAX_BATCHES = 20
MIN_PER_BATCH = 10


@dataclass(frozen=True)
class PointMetrics:
    concurrency: int
    requests: int  # measured requests that completed (arrived inside the steady window)
    rejected: int
    errors: int
    output_tok_s: float
    tok_s_per_gpu: float
    req_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    itl_mean_ms: float
    e2e_p99_ms: float
    prefix_hit_rate: float  # cached prompt tokens / prompt tokens, measured requests
    preemptions: int
    steady_start_s: float = NAN  # the measured window (autotune.steady)
    steady_end_s: float = NAN
    steady: bool = False  # False: the warm-up transient may not have settled in this run
    batches: int = 0  # batches behind the intervals
    ci_level: float = CI_LEVEL
    ttft_p50_ms_lo: float = NAN
    ttft_p50_ms_hi: float = NAN
    ttft_p99_ms_lo: float = NAN
    ttft_p99_ms_hi: float = NAN
    itl_mean_ms_lo: float = NAN
    itl_mean_ms_hi: float = NAN
    itl_p99_ms_lo: float = NAN
    itl_p99_ms_hi: float = NAN
    e2e_p99_ms_lo: float = NAN
    e2e_p99_ms_hi: float = NAN
    output_tok_s_lo: float = NAN
    output_tok_s_hi: float = NAN
    tok_s_per_gpu_lo: float = NAN
    tok_s_per_gpu_hi: float = NAN
    req_s_lo: float = NAN
    req_s_hi: float = NAN
    prefix_hit_rate_lo: float = NAN
    prefix_hit_rate_hi: float = NAN

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def interval(self, name: str) -> Interval:
        return Interval(getattr(self, name), getattr(self, f"{name}_lo"), getattr(self, f"{name}_hi"))

    def worst_precision(self, targets: dict[str, float]) -> tuple[str, float]:
        """The headline figure furthest from its relative half-width target: (name, rel half-width / target)."""
        worst = ("", 0.0)
        for name, kind in HEADLINE.items():
            v = getattr(self, name)
            if kind not in targets:
                continue
            if not np.isfinite(v) or v == 0:
                continue
            ratio = self.interval(name).rel_half_width / targets[kind]
            if ratio > worst[1]:
                worst = (name, ratio)
        return worst


FIELDS = tuple(f.name for f in fields(PointMetrics))


def summarize(
    run: PointRun, *, level: float = CI_LEVEL, warmup_floor: int = 0, cooldown_floor: int = 0
) -> PointMetrics:
    """Steady-state figures of one point and their intervals."""
    df = run.requests
    win = steady_window(df, run.concurrency, warmup_floor=warmup_floor, cooldown_floor=cooldown_floor)
    lo, hi = win.start_s, win.end_s
    span = hi - lo
    arr = df["arrival_s"].to_numpy(dtype=float)
    inside = (arr >= lo) & (arr <= hi)
    meas = df[inside]
    ok = meas[meas["status"] == "ok"]
    b = int(min(MAX_BATCHES, max(2, len(ok) // MIN_PER_BATCH)))
    ok_arr = ok["arrival_s"].to_numpy(dtype=float)
    ttft = (ok["first_token_s"].to_numpy(dtype=float) - ok_arr) * 1000
    b = independent_batches(ok_arr, ttft, lo, hi, b)

    comp = df["completion_s"].to_numpy(dtype=float)
    done_mask = (df["status"] == "ok").to_numpy() & (comp > lo) & (comp <= hi)
    done_b = batch_index(comp[done_mask], lo, hi, b)
    dur = np.full(b, span / b if span > 0 else 0.0)
    reqs = ratio_interval(np.bincount(done_b, minlength=b).astype(float), dur, level)
    out_tok = ratio_interval(_tokens_per_batch(run, df, done_mask, done_b, lo, hi, b), dur, level)

    ok_b = batch_index(ok_arr, lo, hi, b)
    e2e = (ok["completion_s"].to_numpy(dtype=float) - ok_arr) * 1000
    ttft50 = quantile_interval(ttft, ok_b, b, 0.50, level)
    ttft99 = quantile_interval(ttft, ok_b, b, 0.99, level)
    e2e99 = quantile_interval(e2e, ok_b, b, 0.99, level)
    isl = np.bincount(ok_b, weights=ok["input_tokens"].to_numpy(dtype=float), minlength=b)
    hit = ratio_interval(np.bincount(ok_b, weights=ok["cached_tokens"].to_numpy(dtype=float), minlength=b), isl, level)

    itl_v = np.asarray(run.itl_ms, dtype=float)
    itl_w = np.asarray(run.itl_weight, dtype=float)
    if run.itl_time_s is not None and len(run.itl_time_s) == len(itl_v):
        t = np.asarray(run.itl_time_s, dtype=float)
        sel = (t > lo) & (t <= hi)
        itl_v, itl_w, itl_b = itl_v[sel], itl_w[sel], batch_index(t[sel], lo, hi, b)
        itl_batches = b
    else:  # no sample times recorded: an estimate without an interval
        itl_b, itl_batches = np.zeros(len(itl_v), dtype=np.int64), 1
    itl50 = quantile_interval(itl_v, itl_b, itl_batches, 0.50, level, itl_w)
    itl99 = quantile_interval(itl_v, itl_b, itl_batches, 0.99, level, itl_w)
    itl_mean = ratio_interval(
        np.bincount(itl_b, weights=itl_v * itl_w, minlength=itl_batches),
        np.bincount(itl_b, weights=itl_w, minlength=itl_batches),
        level,
    )
    per_gpu = 1.0 / run.gpus if run.gpus else NAN
    figures = {
        "ttft_p50_ms": ttft50,
        "ttft_p99_ms": ttft99,
        "itl_mean_ms": itl_mean,
        "itl_p99_ms": itl99,
        "e2e_p99_ms": e2e99,
        "output_tok_s": out_tok,
        "tok_s_per_gpu": Interval(out_tok.value * per_gpu, out_tok.lo * per_gpu, out_tok.hi * per_gpu),
        "req_s": reqs,
        "prefix_hit_rate": hit,
    }
    bounds = {f"{k}_{side}": getattr(iv, side) for k, iv in figures.items() for side in ("lo", "hi")}
    return PointMetrics(
        concurrency=run.concurrency,
        requests=len(ok),
        rejected=int((meas["status"] == "rejected").sum()),
        errors=int(meas["status"].isin(["error", "timeout"]).sum()),
        output_tok_s=out_tok.value,
        tok_s_per_gpu=figures["tok_s_per_gpu"].value,
        req_s=reqs.value,
        ttft_p50_ms=ttft50.value,
        ttft_p99_ms=ttft99.value,
        itl_p50_ms=itl50.value,
        itl_p99_ms=itl99.value,
        itl_mean_ms=itl_mean.value,
        e2e_p99_ms=e2e99.value,
        prefix_hit_rate=hit.value,
        preemptions=int(meas["preemptions"].sum()),
        steady_start_s=lo,
        steady_end_s=hi,
        steady=win.reached,
        batches=b,
        ci_level=level,
        **bounds,
    )


def _tokens_per_batch(
    run: PointRun, df: pd.DataFrame, done_mask: np.ndarray, done_b: np.ndarray, lo: float, hi: float, b: int
) -> np.ndarray:
    """Output tokens per batch: as generated (first tokens + streamed tokens) when sample times are known.

    In steady state the generation rate equals the completion-based rate aiperf reports, with far less
    noise: a batch does not swing with how many long requests happen to finish inside it.
    """
    if run.itl_time_s is None or len(run.itl_time_s) != len(run.itl_weight):
        return np.bincount(done_b, weights=df["output_tokens"].to_numpy(dtype=float)[done_mask], minlength=b)
    t = np.asarray(run.itl_time_s, dtype=float)
    sel = (t > lo) & (t <= hi)
    tok = np.bincount(batch_index(t[sel], lo, hi, b), weights=np.asarray(run.itl_weight, dtype=float)[sel], minlength=b)
    first = df["first_token_s"].to_numpy(dtype=float)
    fsel = (df["status"] == "ok").to_numpy() & (first > lo) & (first <= hi)
    return tok + np.bincount(batch_index(first[fsel], lo, hi, b), minlength=b)
