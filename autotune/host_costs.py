"""Per-request host costs of the local Dynamo 1.6.1 + mocker stack (the ``dynamo-local`` backend).

What the simulator adds when it stands in for that stack (``autotune.validate.mocker_equivalent``,
for every knob a profile leaves unset). Fitted closed loop at saturation by
``benchmarks/bench_host_capacity.py`` (docs/host-capacity.md) on this project's machine, 2026-12-03
12:30 UTC: 2 vCPUs shared with other work (load average 3.7-6.2 during the runs), Dynamo 1.6.1
frontend + KV router + mocker workers at speed-up 1, the load client on the same host, C=96, 2
repeats. The frontend pool stands for every per-request CPU cost of that host (frontend, client, the
mockers' request handling): they all share the same cores. Under heavier load (8-14) the same fit
gave costs 2-5x higher: re-run the benchmark on a quiet machine to refresh them.
"""

from __future__ import annotations

HOST_FRONTEND_WORKERS = 2  # the host's vCPUs (nproc)
# fitted 8.2 ms per request in all; at most the unloaded route delay (frontend_overhead_ms 4.5 minus
# its 1.0 jitter) is work before routing, the rest is charged after the last token
HOST_FRONTEND_REQUEST_MS = 3.5
HOST_FRONTEND_RESPONSE_MS = 4.7
HOST_FRONTEND_INPUT_TOKEN_US = 36.7  # per prompt token
HOST_FRONTEND_OUTPUT_TOKEN_US = 392.0  # per streamed token (client + frontend + mocker)
# disaggregated requests: the frontend's second leg, on the same cores; fitted on 1P4-2D4
HOST_FRONTEND_HANDOFF_MS = 4.5
# one aggregated worker served more than three at a mocker speed-up of 50 (75.6 vs 42.5 req/s): no
# per-worker serial cost binds on this host; its cost grows with worker processes, i.e. shared CPU
HOST_REQUEST_COST_MS = 0.0
# the prefill worker's own serial hand-off: not separable from the shared CPU on one host
HOST_HANDOFF_COST_MS = 0.0

# the same, by profile section and field (what mocker_equivalent fills into unset knobs)
HOST_COSTS: dict[str, dict[str, float]] = {
    "dynamo": {
        "frontend_workers": HOST_FRONTEND_WORKERS,
        "frontend_request_ms": HOST_FRONTEND_REQUEST_MS,
        "frontend_input_token_us": HOST_FRONTEND_INPUT_TOKEN_US,
        "frontend_output_token_us": HOST_FRONTEND_OUTPUT_TOKEN_US,
        "frontend_handoff_ms": HOST_FRONTEND_HANDOFF_MS,
        "frontend_response_ms": HOST_FRONTEND_RESPONSE_MS,
    },
    "engine": {"request_cost_ms": HOST_REQUEST_COST_MS},
    "kv_transfer": {"handoff_cost_ms": HOST_HANDOFF_COST_MS},
}
