"""Open-loop arrival schedules: Poisson at a base rate, optionally with a rate spike.

Closed-loop load needs no schedule (C clients send back to back); open loop needs send times
fixed in advance so a slow server cannot slow the offered load down (no coordinated omission).
"""

from __future__ import annotations

import numpy as np

from autotune.profile import SpikeSpec


def rate_at(t: float, rate_rps: float, spike: SpikeSpec | None) -> float:
    """Offered rate at ``t`` seconds after the start."""
    if spike is not None and spike.start_s <= t < spike.start_s + spike.duration_s:
        return spike.peak_rate_rps
    return rate_rps


def poisson_arrivals(n: int, rate_rps: float, spike: SpikeSpec | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` send times (seconds from start) of a Poisson process whose rate is piecewise constant.

    Exact for piecewise-constant rates: draw unit-rate exponential gaps and map them through the
    inverse of the integrated rate, one constant piece at a time.
    """
    if n <= 0:
        return np.zeros(0)
    if rate_rps <= 0:
        raise ValueError("rate_rps must be positive")
    pieces = [(0.0, rate_rps)]
    if spike is not None:
        pieces = [(0.0, rate_rps), (spike.start_s, spike.peak_rate_rps), (spike.start_s + spike.duration_s, rate_rps)]
        if spike.start_s == 0:
            pieces = pieces[1:]
    starts = np.array([p[0] for p in pieces] + [np.inf])
    rates = np.array([p[1] for p in pieces])
    # Integrated rate at the start of each piece.
    lam0 = np.concatenate([[0.0], np.cumsum(rates[:-1] * np.diff(starts[:-1]))])
    targets = np.cumsum(rng.exponential(1.0, size=n))
    k = np.searchsorted(lam0, targets, side="right") - 1
    return starts[k] + (targets - lam0[k]) / rates[k]
