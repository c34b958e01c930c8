"""A request in flight inside the simulated cluster: shared by the router, the cluster and the engines."""

from __future__ import annotations

import math


class Seq:
    """A request's state inside the cluster (simulator-internal, mutable)."""

    __slots__ = (
        "rid",
        "isl",
        "osl",
        "hashes",
        "template",
        "arrival",
        "routed",
        "pworker",
        "dworker",
        "cached",
        "prefill_left",
        "prefill_done_tokens",
        "recompute",
        "gen_at_join",
        "join_step",
        "cap",
        "held",
        "private",
        "prefill_start",
        "prefill_end",
        "xfer_end",
        "first_token",
        "done",
        "preemptions",
        "decoding",
        "engine",
        "finish_step",
        "overlap",
        "client",
        "rejected",
    )

    def __init__(
        self, rid: int, isl: int, osl: int, hashes: tuple[int, ...], template: int, arrival: float, client: int
    ) -> None:
        self.rid, self.isl, self.osl, self.hashes, self.template = rid, isl, osl, hashes, template
        self.arrival, self.client = arrival, client
        self.routed = math.nan
        self.pworker = self.dworker = -1
        self.cached = 0
        self.prefill_left = isl
        self.prefill_done_tokens = 0
        self.recompute = 0  # generated tokens to recompute after a preemption
        self.gen_at_join = 0
        self.join_step = 0
        self.cap = 0  # token capacity of the blocks held
        self.held: tuple[int, ...] = ()
        self.private = 0
        self.prefill_start = self.prefill_end = self.xfer_end = self.first_token = self.done = math.nan
        self.preemptions = 0
        self.decoding = False
        self.engine = -1
        self.finish_step = 0
        self.overlap = 0
        self.rejected = False
