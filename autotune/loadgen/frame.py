"""What the load client alone knows of a burst, as the per-request frame of ``autotune.records``.

A live point's ``PointRun`` starts from it (``autotune.dynamo.point`` adds which worker served each
request, from the frontend's log); a running burst is judged on it (``autotune.loadgen.live_point``),
so both go through the same ``metrics.summarize`` as a simulated point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from autotune.loadgen.client import RequestRecord
from autotune.loadgen.prompts import RequestSpec
from autotune.records import REQUEST_COLUMNS

NAN = float("nan")


def client_frame(records: Sequence[RequestRecord], specs: Sequence[RequestSpec], measured: np.ndarray) -> pd.DataFrame:
    """One row per request (``REQUEST_COLUMNS``); what the client cannot see is NaN or worker -1."""
    n = len(records)
    itl = [r.itl_ms() for r in records]
    cols: dict[str, object] = {
        "request_id": [r.index for r in records],
        "client": [r.client for r in records],
        "template": [s.template for s in specs],
        "arrival_s": [r.send_s for r in records],
        "routed_s": np.full(n, NAN),
        "prefill_worker": np.full(n, -1),
        "decode_worker": np.full(n, -1),
        "input_tokens": [
            r.prompt_tokens if r.prompt_tokens >= 0 else s.input_tokens for r, s in zip(records, specs, strict=True)
        ],
        "output_tokens": [r.output_tokens if r.status == "ok" else 0 for r in records],
        "cached_tokens": [max(r.cached_tokens, 0) for r in records],
        "prefill_start_s": np.full(n, NAN),
        "prefill_end_s": np.full(n, NAN),
        "kv_transfer_end_s": np.full(n, NAN),
        "first_token_s": [r.first_token_s for r in records],
        "itl_mean_ms": [m for m, _ in itl],
        "itl_max_ms": [x for _, x in itl],
        "completion_s": [r.end_s for r in records],
        "preemptions": np.full(n, NAN),
        "status": [r.status if r.status != "cancelled" else "error" for r in records],
        "error": [r.error for r in records],
        "measured": np.asarray(measured, dtype=bool),
    }
    return pd.DataFrame({c: cols[c] for c in REQUEST_COLUMNS})


def itl_samples(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Every streamed gap of the ok requests (ms) and when its later token arrived (s from the burst
    start): the live ITL samples, timed, so batch means give them an interval as for the simulator's."""
    gaps: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for r in records:
        if r.status == "ok" and len(r.chunk_times) > 1:
            t = np.asarray(r.chunk_times, dtype=float)
            gaps.append(np.diff(t) * 1e3)
            times.append(t[1:])
    if not gaps:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(gaps), np.concatenate(times)
