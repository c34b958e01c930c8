"""PoA-hat, the headline: measured latency of the realised routing over the Hungarian optimum on
frozen no-queue latencies (arXiv 2606.17081 §6.4, §7.6, Remark 3; reading in reference/paper.md §3).

Per window W of m consecutive decisions of a routing stage (m: the stage's candidate workers):

    ACT(W) = Σ_r measured latency of r             what the request experienced (queueing included)
    OPT(W) = min-cost assignment of W's requests    on frozen *no-queue* costs c(r, w, k)

    TTFT stage (prefill routing when disaggregated, the one stage when aggregated):
        measured = TTFT_r (first token − arrival: queueing, KV transfer and first step included)
        c(r, w, k) = T_w(u_rw) · (1 + k)      prefill time on w of r's uncached tokens at the decision-time
                                              overlap, no resident load; k window-mates ahead on the same w
    decode stage (disaggregated):
        measured = completion − first token (the OSL − 1 streamed tokens)
        c(r, w, k) = (OSL_r − 1) · step_w(k + 1 sequences, context ISL_r + OSL_r/2 each)

    PoA-hat_stage = Σ_W ACT(W) / Σ_W OPT(W)   (ratio of sums; per-window median and P90 too)

The headline is the TTFT stage's value; the decode stage's is reported beside it (``by_stage``),
not folded in: it prices another latency (streaming, not first token). Up to noise it is ≥ 1 when the
cost model matches the engine (a request cannot finish faster than alone on the best worker); it can
fall below 1 when OPT's matching binds (two requests stacked on one much faster worker), when the
overlap grew between decision and prefill, or when the frozen costs over-price the engine (a live
point timed by the mocker's default polynomial) — docs/poa-hat.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from autotune.perf import StepTimer
from autotune.poa.windows import PoaResult, PrefillPricer, Window, combine, decision_windows, optimal_cost
from autotune.records import DecisionLog


def ttft_stage(logs: dict[str, DecisionLog]) -> str:
    """The stage whose routing the first token waits on: prefill when disaggregated, else the one stage."""
    return "prefill" if "prefill" in logs else "agg"


def measured_latencies(requests: pd.DataFrame) -> dict[int, tuple[float, float]]:
    """request_id → (TTFT s, decode s) of every request that completed with a first token."""
    ok = requests[requests["status"] == "ok"]
    ttft = (ok["first_token_s"] - ok["arrival_s"]).to_numpy(dtype=float)
    decode = (ok["completion_s"] - ok["first_token_s"]).to_numpy(dtype=float)
    rid = ok["request_id"].to_numpy(dtype=np.int64)
    return {int(r): (t, d) for r, t, d in zip(rid, ttft, decode, strict=True) if np.isfinite(t) and np.isfinite(d)}


def measured_windows(
    log: DecisionLog,
    latencies: dict[int, tuple[float, float]],
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
    speedup: float = 1.0,
) -> list[Window]:
    """(time of the window's first decision, Σ measured, OPT) per window of one stage's decisions.

    ``speedup``: the engine's time compression (the mocker's ``--speedup-ratio``); measured times are
    compressed by it, so the frozen costs are too. Requests without a measured first token (rejected,
    errors, timeouts) are left out of both sides.
    """
    decode = log.stage == "decode"
    prefill = PrefillPricer([timers[w] for w in log.workers])
    steps: dict[tuple[int, int, int], np.ndarray] = {}  # (worker, window size, ctx) -> step time per slot

    def decode_steps(w: int, n: int, ctx: int) -> np.ndarray:
        key = (w, n, ctx)
        got = steps.get(key)
        if got is None:
            step = timers[w].step_s
            got = steps[key] = np.array([step(0, 0.0, k + 1, (k + 1) * ctx, 0.0) for k in range(n)])
        return got

    opt_memo: dict[bytes, float] = {}
    out = []
    for rows in decision_windows(log, window, time_range, keep=lambda i: log.request_id[i] in latencies):
        n = len(rows)
        if decode:
            osl = np.array([log.output_tokens[i] for i in rows])
            ctx = np.array([log.input_tokens[i] for i in rows]) + osl // 2
            per_ctx = {c: np.stack([decode_steps(w, n, c) for w in log.workers]) for c in set(ctx.tolist())}
            cost = np.maximum(osl - 1, 0)[:, None, None] * np.stack([per_ctx[c] for c in ctx.tolist()])
            act = sum(latencies[log.request_id[i]][1] for i in rows)
        else:
            cost = prefill.own(log, rows, block_size)[:, :, None] * (1.0 + np.arange(n)[None, None, :])
            act = sum(latencies[log.request_id[i]][0] for i in rows)
        out.append((log.time_s[rows[0]], act, optimal_cost(cost / speedup, opt_memo)))
    return out


def poa_hat(
    logs: dict[str, DecisionLog],
    requests: pd.DataFrame,
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
    batches: int = 0,
    level: float = 0.95,
    speedup: float = 1.0,
) -> PoaResult:
    """PoA-hat of a load point: the TTFT stage's ratio of sums, every stage's value in ``by_stage``."""
    lat = measured_latencies(requests)
    stages = {s: measured_windows(log, lat, timers, block_size, window, time_range, speedup) for s, log in logs.items()}
    return combine(stages, {ttft_stage(logs): 1.0}, time_range, batches, level)
