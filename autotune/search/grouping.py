"""Router variations of one worker shape back to back, so a live study patches its running graph.

A router-only change costs a frontend restart, a new shape costs every worker's start (dynamo.md §1
"Redeploy cost"). With ``router_block`` k > 1, after a trial of shape S completes, the next trials of
this loop keep S's shape parameters fixed until k trials in a row have had shape S; the sampler still
proposes their router settings, through Optuna's ``PartialFixedSampler``. Every trial is an honest
observation at the parameters it ran with, so the sampler's model stays sound; what changes is only
how often a proposed shape is revisited (k trials per shape instead of one). Kept local to the loop
(not ``enqueue_trial``) so, on a shared study, another worker never picks up this worker's shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from autotune.search.space import shape_params


class ShapeBlocks:
    """Which shape, if any, the next ask fixes; fed with each finished trial of this loop."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.shape: dict[str, Any] | None = None
        self.run = 0  # trials in a row with ``shape``, all complete

    def next_fixed(self) -> dict[str, Any]:
        if self.shape is None or self.run >= self.block:
            return {}
        return dict(self.shape)

    def finished(self, params: dict[str, Any], complete: bool) -> None:
        """A trial of this loop ended; a failed one ends its block (its shape may not deploy)."""
        shape = shape_params(params)
        if not complete:
            self.shape, self.run = None, 0
        elif shape == self.shape:
            self.run += 1
        else:
            self.shape, self.run = shape, 1


@contextmanager
def fixing(study: optuna.Study, fixed: dict[str, Any]) -> Iterator[None]:
    """Around ``study.ask()`` and the trial's suggestions: ``fixed`` parameters are held.

    Enqueued trials (baselines, retries) still come first and keep their own parameters.
    """
    if not fixed:
        yield
        return
    base = study.sampler
    study.sampler = optuna.samplers.PartialFixedSampler(fixed, base)
    try:
        yield
    finally:
        study.sampler = base
