"""Writing a Mooncake-style trace from a profile's length distributions, with prefix groups.

What ``autotune trace generate`` writes, and how the shipped example trace was made: requests
arrive as a Poisson process at ``rate_rps``; each belongs to one of the workload's ``templates``
and shares that template's first ``prefix_tokens`` (whole blocks of ``block_tokens``) with the
others of its group; the rest of its blocks are its own. Lengths come from the workload's
distributions (``autotune.workload.draw_lengths``), so a trace and the distributions it came from
describe the same traffic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from autotune.profile import WorkloadSpec
from autotune.workload import draw_lengths


def mooncake_records(
    w: WorkloadSpec, n: int, *, rate_rps: float, block_tokens: int, seed: int
) -> Iterator[dict[str, Any]]:
    """``n`` Mooncake records (``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``)."""
    rng = np.random.default_rng([seed, 5381])
    template = rng.integers(0, w.templates, size=n)
    isl = np.maximum(draw_lengths(w.input_tokens, n, rng), w.prefix_tokens + 1)
    osl = np.maximum(draw_lengths(w.output_tokens, n, rng), 1)
    t_ms = np.cumsum(rng.exponential(1e3 / rate_rps, size=n))
    shared = w.prefix_tokens // block_tokens
    group_ids = np.arange(w.templates * shared).reshape(w.templates, shared)  # ids 0.. are the shared blocks
    next_id = w.templates * shared
    for i in range(n):
        blocks = -(-int(isl[i]) // block_tokens)
        own = blocks - shared
        ids = group_ids[int(template[i])].tolist() + list(range(next_id, next_id + own))
        next_id += own
        yield {
            "timestamp": int(round(float(t_ms[i] - t_ms[0]))),
            "input_length": int(isl[i]),
            "output_length": int(osl[i]),
            "hash_ids": ids,
        }


def write_trace(path: Path, records: Iterator[dict[str, Any]]) -> int:
    """Write records one JSON object per line; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(", ", ": ")) + "\n")
            count += 1
    return count
