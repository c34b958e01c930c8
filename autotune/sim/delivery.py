"""Noise on the way a streamed token travels from the engine to the client.

A client times each token when it arrives, not when the engine's step ended; each token is delayed
by its own exponential share of frontend and network work, so a measured inter-token gap is the step
time plus the difference of two such delays (a Laplace variable with the delay's mean as scale). It
widens the ITL percentiles and leaves the mean alone. We add it by quadrature, not sampling: every
ITL sample is spread over fixed Laplace quantiles whose masses are symmetric, so the weighted mean
is kept (exactly, unless noise larger than a step would make a gap negative: tokens of one stream
arrive in order, so such gaps are cut at 0) and the result is deterministic.
"""

from __future__ import annotations

import math

import numpy as np

# Probability edges of the lower half, mirrored for the upper half: fine in the tail, with bins
# straddling 1 % and 10 % so P99 and P10 read a node next to the true quantile, not a bin's far end.
_EDGES = (0.0, 0.001, 0.003, 0.006, 0.009, 0.011, 0.015, 0.02, 0.03, 0.05, 0.07, 0.09, 0.11, 0.15, 0.2, 0.3, 0.4, 0.5)


def _laplace_nodes() -> tuple[np.ndarray, np.ndarray]:
    """Unit-scale Laplace: one node per probability bin (its mid-probability quantile) and its mass."""
    # lower half: the quantile at probability p is ln(2p); each bin is read at its mid-probability
    lo = [(math.log(p0 + p1), p1 - p0) for p0, p1 in zip(_EDGES[:-1], _EDGES[1:], strict=True)]
    nodes = [x for x, _ in lo] + [-x for x, _ in reversed(lo)]
    mass = [m for _, m in lo] + [m for _, m in reversed(lo)]
    return np.array(nodes), np.array(mass)


_NODES, _MASS = _laplace_nodes()


def with_delivery_noise(
    itl_ms: np.ndarray, itl_weight: np.ndarray, jitter_ms: float, times_s: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """ITL samples, weights (and sample times) as a client would see them, each token delayed by Exp(``jitter_ms``)."""
    v = np.asarray(itl_ms, dtype=float)
    w = np.asarray(itl_weight, dtype=float)
    if jitter_ms <= 0 or v.size == 0:
        return v, w, times_s
    spread = v[:, None] + jitter_ms * _NODES[None, :]
    times = None if times_s is None else np.repeat(np.asarray(times_s, dtype=float), len(_NODES))
    return np.maximum(spread, 0.0).ravel(), (w[:, None] * _MASS[None, :]).ravel(), times
