"""Summary figures of one load point: throughput, latency percentiles, prefix-hit rate.

The same function scores simulated and live points, so sim-vs-live comparisons are apples to apples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from autotune.records import PointRun


@dataclass(frozen=True)
class PointMetrics:
    concurrency: int
    requests: int  # measured requests that completed
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

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Quantile of weighted samples (ITL segments carry a token count as weight)."""
    if len(values) == 0 or float(np.sum(weights)) <= 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(v[min(idx, len(v) - 1)])


def summarize(run: PointRun) -> PointMetrics:
    df = run.requests
    meas = df[df["measured"].astype(bool)]
    ok = meas[meas["status"] == "ok"]
    lo, hi = run.window_s
    span = hi - lo
    done = df[(df["status"] == "ok") & (df["completion_s"] > lo) & (df["completion_s"] <= hi)]
    out_tok_s = float(done["output_tokens"].sum() / span) if span > 0 else float("nan")
    req_s = float(len(done) / span) if span > 0 else float("nan")
    ttft = (ok["first_token_s"] - ok["arrival_s"]).to_numpy(dtype=float) * 1000
    e2e = (ok["completion_s"] - ok["arrival_s"]).to_numpy(dtype=float) * 1000
    itl_w = np.asarray(run.itl_weight, dtype=float)
    itl_v = np.asarray(run.itl_ms, dtype=float)
    isl = float(ok["input_tokens"].sum())

    def pct(x: np.ndarray, q: float) -> float:
        x = x[~np.isnan(x)]
        return float(np.percentile(x, q)) if len(x) else float("nan")

    return PointMetrics(
        concurrency=run.concurrency,
        requests=len(ok),
        rejected=int((meas["status"] == "rejected").sum()),
        errors=int(meas["status"].isin(["error", "timeout"]).sum()),
        output_tok_s=out_tok_s,
        tok_s_per_gpu=out_tok_s / run.gpus if run.gpus else float("nan"),
        req_s=req_s,
        ttft_p50_ms=pct(ttft, 50),
        ttft_p99_ms=pct(ttft, 99),
        itl_p50_ms=weighted_quantile(itl_v, itl_w, 0.5),
        itl_p99_ms=weighted_quantile(itl_v, itl_w, 0.99),
        itl_mean_ms=float(np.sum(itl_v * itl_w) / np.sum(itl_w)) if np.sum(itl_w) > 0 else float("nan"),
        e2e_p99_ms=pct(e2e, 99),
        prefix_hit_rate=float(ok["cached_tokens"].sum() / isl) if isl > 0 else float("nan"),
        preemptions=int(meas["preemptions"].sum()),
    )
