"""What one load point produces, whichever backend ran it: per-request rows and routing decisions.

Every backend (simulator, dynamo-local, k8s) fills the same structures, so scoring (``metrics``,
``poa``) never knows where the numbers came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Per-request columns. Times are seconds from the start of the point; NaN where a backend cannot
# observe a value (e.g. prefill start on a live frontend).
REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id",
    "client",  # closed-loop client index, -1 for open loop
    "template",  # prefix group
    "arrival_s",
    "routed_s",
    "prefill_worker",  # worker index (Topology.worker_tps order); -1 unknown
    "decode_worker",  # same worker as prefill in aggregated mode
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "prefill_start_s",
    "prefill_end_s",
    "kv_transfer_end_s",
    "first_token_s",
    "itl_mean_ms",
    "itl_max_ms",
    "completion_s",
    "preemptions",
    "status",  # "ok" | "rejected" (503 all workers busy) | "error" | "timeout"
    "error",  # short reason, "" when ok
    "measured",  # False for warm-up and cool-down requests
)


@dataclass
class DecisionLog:
    """Routing decisions of one stage ("prefill", "decode" or "agg").

    For each decision, what the router knew about every candidate worker at that moment. The
    PoA-hat estimator prices requests on these frozen snapshots.
    """

    stage: str
    workers: list[int]  # worker indices of the candidates (same order in every row)
    time_s: list[float] = field(default_factory=list)
    request_id: list[int] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)  # position in ``workers``
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    overlap_blocks: list[tuple[int, ...]] = field(default_factory=list)
    active_prefill_tokens: list[tuple[int, ...]] = field(default_factory=list)
    active_blocks: list[tuple[int, ...]] = field(default_factory=list)
    active_requests: list[tuple[int, ...]] = field(default_factory=list)
    logits: list[tuple[float, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chosen)

    def to_frame(self) -> pd.DataFrame:
        """One row per decision × candidate: the routing-cost table written to results."""
        n, w = len(self), len(self.workers)
        if n == 0:
            return pd.DataFrame(
                columns=[
                    "stage",
                    "decision",
                    "time_s",
                    "request_id",
                    "worker",
                    "chosen",
                    "overlap_blocks",
                    "active_prefill_tokens",
                    "active_blocks",
                    "logit",
                ]
            )
        return pd.DataFrame(
            {
                "stage": self.stage,
                "decision": np.repeat(np.arange(n), w),
                "time_s": np.repeat(self.time_s, w),
                "request_id": np.repeat(self.request_id, w),
                "worker": np.tile(self.workers, n),
                "chosen": (np.tile(np.arange(w), n) == np.repeat(self.chosen, w)),
                "overlap_blocks": np.asarray(self.overlap_blocks).reshape(-1),
                "active_prefill_tokens": np.asarray(self.active_prefill_tokens).reshape(-1),
                "active_blocks": np.asarray(self.active_blocks).reshape(-1),
                "logit": np.asarray(self.logits, dtype=float).reshape(-1),
            }
        )


@dataclass
class PointRun:
    """Raw outcome of one load point (one concurrency or one arrival schedule) on one topology."""

    concurrency: int
    requests: pd.DataFrame  # REQUEST_COLUMNS
    decisions: dict[str, DecisionLog]  # by stage
    itl_ms: np.ndarray  # inter-token latency samples (or histogram bin centres) ...
    itl_weight: np.ndarray  # ... and their weights
    window_s: tuple[float, float]  # measurement window (warm-up and cool-down excluded)
    gpus: int
    backend: str
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: timing source, versions, etc.
    router_changes: list[tuple[float, str]] = field(default_factory=list)  # (time, settings) when changed
    itl_time_s: np.ndarray | None = None  # when each ITL sample was observed (None: not recorded)
    summary: Any = None  # its PointMetrics once computed (the run-length rule computes them; scoring reuses)
