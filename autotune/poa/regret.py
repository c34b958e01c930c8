"""Routing regret: the realised assignment and the optimum priced on the *same* frozen cost matrix.

This was autotune's PoA-hat before the paper's measured-latency reading (``autotune.poa.measured``)
became the headline. Both sides of a window are priced from the router state frozen at the window's
first decision; a worker's k-th slot carries the k window-mates placed there before it:

    prefill / aggregated stage:  cost(r, w, k) = T_w(u_rw) · (1 + ρ_w + k)
        T_w(u)  prefill time on w of r's uncached tokens u_rw = ISL_r − overlap_rw·bs
        ρ_w     w's resident prefill work at window start, in units of the window's mean T_w
    decode stage:                cost(r, w, k) = OSL_r · step_w(B_w + k + 1, ctx_w + (k + 1)·ctx̄)

It isolates the routing choice from queueing the router could not avoid: with one candidate worker
there is no choice and it is exactly 1. It is ≈ 1 whenever the router picks what the matching would,
and **falls below 1** when the router stacks requests on one much cheaper worker (cache-hot, idle,
faster TP) — the perfect-matching constraint binds (the paper's 0.968 at C=64, m=5). The headline
over stages is the decision-weighted mean of the per-stage ratios of sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autotune.perf import StepTimer
from autotune.poa.windows import PoaResult, PrefillPricer, Window, combine, decision_windows, window_costs
from autotune.records import DecisionLog


def regret_windows(
    log: DecisionLog,
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
) -> list[Window]:
    """(time of the window's first decision, ACT, OPT) per window of one stage's decisions."""
    workers = log.workers
    m = len(workers)
    bs = block_size
    prefill = PrefillPricer([timers[w] for w in workers])
    # (candidate, resident requests, resident context, window mean context, window size) -> step per slot:
    # the frozen states repeat, so each is priced once
    decode_memo: dict[tuple[int, int, int, float, int], np.ndarray] = {}
    opt_memo: dict[bytes, float] = {}
    out = []
    for rows in decision_windows(log, window, time_range):
        n = len(rows)
        first = rows[0]
        cost = np.empty((n, m, n))
        if log.stage == "decode":
            ab = log.active_blocks[first]
            ar = log.active_requests[first]
            osl = np.array([log.output_tokens[i] for i in rows], dtype=float)
            ctx_mean = sum(log.input_tokens[i] for i in rows) / n
            for j, w in enumerate(workers):
                base_ctx = ab[j] * bs
                key = (j, ar[j], base_ctx, ctx_mean, n)
                steps = decode_memo.get(key)
                if steps is None:
                    step = timers[w].step_s
                    steps = decode_memo[key] = np.array(
                        [step(0, 0.0, ar[j] + k + 1, int(base_ctx + (k + 1) * ctx_mean), 0.0) for k in range(n)]
                    )
                cost[:, j, :] = osl[:, None] * steps[None, :]
        else:
            apt = log.active_prefill_tokens[first]
            own = prefill.own(log, rows, bs)
            mean_own = own.mean(axis=0)
            resident = np.array([prefill.t(j, apt[j], 0) if apt[j] > 0 else 0.0 for j in range(m)])
            rho = np.divide(resident, mean_own, out=np.zeros(m), where=mean_own > 0)
            cost = own[:, :, None] * (1.0 + rho[None, :, None] + np.arange(n)[None, None, :])
        out.append((log.time_s[first], *window_costs(cost, [log.chosen[i] for i in rows], opt_memo)))
    return out


def routing_regret(
    logs: dict[str, DecisionLog],
    timers: Sequence[StepTimer],
    block_size: int,
    window: int | None = None,
    time_range: tuple[float, float] | None = None,
    batches: int = 0,
    level: float = 0.95,
) -> PoaResult:
    """Routing regret of a load point over all routing stages (decision-weighted mean of ratios of sums)."""
    stages = {s: regret_windows(log, timers, block_size, window, time_range) for s, log in logs.items()}
    weights = {s: float(sum(1 for c in log.chosen if c >= 0)) for s, log in logs.items()}
    return combine(stages, weights, time_range, batches, level)
