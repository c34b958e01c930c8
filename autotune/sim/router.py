"""Dynamo's KV router, as it scores and picks workers (dynamo.md §2).

One internal meaning for every Dynamo version (0.9's ``--kv-overlap-score-weight`` is the 1.0-1.2 ω)::

    logit_w = ω · max((active_prefill_tokens_w + ISL)/bs − credit · overlap_w, 0) + decode_term_w

with credit 1 this is exactly the 1.0-1.2 form ``ω·(active_prefill + ISL − overlap·bs)/bs + blocks``,
and it is the 1.3+ form with ``prefill_load_scale = ω``. The lowest logit wins; τ = 0 takes the
argmin (ties: smallest radix tree, then random), τ > 0 samples ``p ∝ exp(−(logit/(max−min))/τ)``.

Stages (disaggregated): the prefill router tracks no active blocks (decode_term = 0); the decode
router forces ω = 0 and keeps τ. Where Dynamo 0.9.0 (the paper's) differs from 1.x, ``RouterRules``
says so explicitly (measured on a real 0.9.0 frontend, dynamo.md §7): decode load under
``assume_kv_reuse``, and random ties where 0.9.0 builds no overlap index.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from autotune.records import DecisionLog
from autotune.sim.kvcache import KvCache
from autotune.topology import DEFAULT_ROUTER, RouterSettings, Topology


@dataclass(frozen=True)
class RouterRules:
    """The router behaviours that differ between Dynamo versions (everything else is shared).

    * ``decode_assumes_kv_reuse``: the decode stage counts a prompt block shared by several active
      requests on a worker once, and a new request's blocks already active there as free. 0.9.0 keeps
      ``assume_kv_reuse`` on for decode (45-48 % of decode logits off the plain count, 0 % with
      ``--no-assume-kv-reuse``; dynamo.md §7); 1.x overrides it off for the decode stage (§2).
    * ``index_only_where_used``: 0.9.0 builds no overlap index where it does not use one: in the
      prefill stage at ω = 0 (all prefill workers tie, random) and in the decode stage (decode workers
      publish no KV events). There it sees overlap 0 and no radix tree, so a tie is uniformly random
      (dynamo.md §7). For 1.x the simulator keeps the smallest-radix-tree tie-break everywhere.
    """

    decode_assumes_kv_reuse: bool
    index_only_where_used: bool

    @classmethod
    def for_version(cls, version: tuple[int, int]) -> RouterRules:
        paper_era = version < (1, 0)
        return cls(decode_assumes_kv_reuse=paper_era, index_only_where_used=paper_era)


def effective_router(topology: Topology, rules: RouterRules) -> RouterSettings:
    """The router settings of ``topology`` that can change a simulated run; every other one is set to
    Dynamo's default (τ 0, ω 1, credit 1).

    Read off ``KvRouter.choose``: a stage with one worker decides nothing; the decode stage ignores ω and
    credit; in the prefill stage ω only scales every logit, so any ω > 0 acts as ω = 1; credit only acts
    through ω > 0; and where 0.9.0 builds no prefill index (ω = 0), τ > 0 and τ = 0 both draw a uniformly
    random worker with the same random number. Two topologies of one shape
    with the same effective settings therefore simulate identically for a seed, so a study runs one
    and reuses its result for the other (``autotune.backends.result_key``).
    """
    r, d = topology.router, DEFAULT_ROUTER
    if topology.disaggregated:
        choice = topology.prefill_workers > 1  # ω and credit act in the prefill stage only
        tau_acts = topology.decode_workers > 1 or (choice and (r.overlap_weight > 0 or not rules.index_only_where_used))
    else:
        choice = tau_acts = topology.agg_workers > 1
    scale_free = topology.disaggregated and r.overlap_weight > 0  # the prefill stage: ω·load, nothing added
    return RouterSettings(
        r.temperature if tau_acts else d.temperature,
        r.overlap_weight if choice and not scale_free else d.overlap_weight,
        r.overlap_credit if choice and r.overlap_weight > 0 else d.overlap_credit,
    )


class RouterState:
    """The router's own bookkeeping per worker (what Dynamo's sequence tracker knows).

    With ``share_blocks`` (decode under ``assume_kv_reuse``) it keeps, per worker, the multiset of
    active prompt-block hashes, and ``active_blocks`` counts a hash once however many requests hold it.
    """

    __slots__ = ("active_prefill_tokens", "active_blocks", "active_requests", "share_blocks", "active_hashes")

    def __init__(self, n: int, share_blocks: bool = False) -> None:
        self.active_prefill_tokens = [0] * n
        self.active_blocks = [0] * n
        self.active_requests = [0] * n
        self.share_blocks = share_blocks
        self.active_hashes: list[Counter[int]] = [Counter() for _ in range(n)]

    def shared_blocks(self, w: int, hashes: tuple[int, ...]) -> int:
        """Leading blocks of ``hashes`` already active on ``w`` (hashes chain, so the shared part is a prefix)."""
        if not self.share_blocks:
            return 0
        active = self.active_hashes[w]
        n = 0
        for h in hashes:
            if h not in active:
                break
            n += 1
        return n

    def add_blocks(self, w: int, hashes: tuple[int, ...], blocks: int) -> None:
        """A request of ``blocks`` prompt blocks (``hashes`` for its full ones) becomes active on ``w``."""
        if not self.share_blocks:
            self.active_blocks[w] += blocks
            return
        active = self.active_hashes[w]
        new = blocks - len(hashes)  # the partial last block is the request's own
        for h in hashes:
            if not active[h]:
                new += 1
            active[h] += 1
        self.active_blocks[w] += new

    def remove_blocks(self, w: int, hashes: tuple[int, ...], blocks: int) -> None:
        if not self.share_blocks:
            self.active_blocks[w] -= blocks
            return
        active = self.active_hashes[w]
        gone = blocks - len(hashes)
        for h in hashes:
            c = active[h] - 1
            if c:
                active[h] = c
            else:
                del active[h]
                gone += 1
        self.active_blocks[w] -= gone


class KvRouter:
    def __init__(
        self,
        settings: RouterSettings,
        block_size: int,
        rng: random.Random,
        busy_blocks_frac: float | None = None,
        busy_prefill_tokens: int | None = None,
        rules: RouterRules = RouterRules(decode_assumes_kv_reuse=False, index_only_where_used=False),
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.bs = block_size
        self.rng = rng
        self.busy_blocks_frac = busy_blocks_frac
        self.busy_prefill_tokens = busy_prefill_tokens

    def choose(
        self,
        stage: str,
        candidates: list[int] | range,
        caches: list[KvCache],
        state: RouterState,
        hashes: tuple[int, ...],
        isl: int,
        now: float,
        rid: int,
        osl: int,
        log: DecisionLog | None,
    ) -> tuple[int, int] | None:
        """Return ``(worker, overlap_blocks)``, or None when every candidate is busy (HTTP 503)."""
        bs = self.bs
        s = self.settings
        req_blocks = -(-isl // bs)
        apt, ab = state.active_prefill_tokens, state.active_blocks
        if stage == "decode":
            omega, credit = 0.0, 0.0
        else:
            omega, credit = s.overlap_weight, s.effective_credit
        no_index = self.rules.index_only_where_used and (stage == "decode" or (stage == "prefill" and not omega))
        if stage == "decode" or no_index:
            overlaps = [0] * len(candidates)
        else:
            overlaps = [caches[w].match(hashes) for w in candidates]
        if stage == "decode":  # state.shared_blocks is 0 unless the version assumes KV reuse in decode
            logits: list[float] = [ab[w] + req_blocks - state.shared_blocks(w, hashes) for w in candidates]
        elif stage == "prefill":
            # ω only scales every prefill logit, and neither the argmin nor the span-normalised softmax
            # sees a common scale: pick on the unscaled load, so any ω > 0 routes exactly as ω = 1
            scores = (
                [max((apt[w] + isl) / bs - credit * ov, 0.0) for w, ov in zip(candidates, overlaps, strict=True)]
                if omega
                else [0.0] * len(candidates)
            )
            logits = [omega * v for v in scores]
        else:
            logits = [
                (omega * max((apt[w] + isl) / bs - credit * ov, 0.0) if omega else 0.0)
                + ab[w]
                + req_blocks
                - (ov if credit else 0)  # ω = 0 or credit 0: no affinity
                for w, ov in zip(candidates, overlaps, strict=True)
            ]
        # the decision log records what the workers' caches really held (PoA-hat prices the uncached
        # prompt), even where the router itself looked at no index and scored overlap 0
        logged = [caches[w].match(hashes) for w in candidates] if no_index and stage != "decode" else overlaps
        if stage != "prefill":
            scores = logits
        pool = list(range(len(candidates)))
        if self.busy_blocks_frac is not None or self.busy_prefill_tokens is not None:
            pool = [i for i in pool if not self._busy(candidates[i], caches, state)]
            if not pool:
                if log is not None:
                    self._log(log, now, rid, -1, candidates, isl, osl, logged, state, logits)
                return None
        pick = self._pick(pool, scores, candidates, None if no_index else caches, s.temperature)
        if log is not None:
            self._log(log, now, rid, pick, candidates, isl, osl, logged, state, logits)
        return candidates[pick], overlaps[pick]

    def _busy(self, w: int, caches: list[KvCache], state: RouterState) -> bool:
        if self.busy_blocks_frac is not None and state.active_blocks[w] > self.busy_blocks_frac * caches[w].total:
            return True
        return self.busy_prefill_tokens is not None and state.active_prefill_tokens[w] > self.busy_prefill_tokens

    def _pick(
        self,
        pool: list[int],
        logits: list[float],
        candidates: list[int] | range,
        caches: list[KvCache] | None,
        temperature: float,
    ) -> int:
        """τ > 0: softmax over span-normalised logits; τ = 0: argmin, ties to the smallest radix tree
        (``caches`` None: no tree was built, so every tie is uniformly random), then random."""
        if len(pool) == 1:
            return pool[0]
        if temperature > 0:
            vals = [logits[i] for i in pool]
            lo, hi = min(vals), max(vals)
            span = hi - lo
            if span <= 0:
                return pool[self.rng.randrange(len(pool))]
            weights = [math.exp(-((v - lo) / span) / temperature) for v in vals]
            x = self.rng.random() * sum(weights)
            acc = 0.0
            for i, wgt in zip(pool, weights, strict=True):
                acc += wgt
                if x < acc:
                    return i
            return pool[-1]
        best = min(logits[i] for i in pool)
        ties = [i for i in pool if logits[i] - best <= 1e-9]
        if len(ties) > 1 and caches is not None:
            smallest = min(caches[candidates[i]].cached_blocks for i in ties)
            ties = [i for i in ties if caches[candidates[i]].cached_blocks == smallest]
        return ties[0] if len(ties) == 1 else ties[self.rng.randrange(len(ties))]

    @staticmethod
    def _log(
        log: DecisionLog,
        now: float,
        rid: int,
        pick: int,
        candidates: list[int] | range,
        isl: int,
        osl: int,
        overlaps: list[int],
        state: RouterState,
        logits: list[float],
    ) -> None:
        log.time_s.append(now)
        log.request_id.append(rid)
        log.chosen.append(pick)
        log.input_tokens.append(isl)
        log.output_tokens.append(osl)
        log.overlap_blocks.append(tuple(overlaps))
        if isinstance(candidates, range) and candidates.step == 1:  # pools are contiguous: slice, don't gather
            lo, hi = candidates.start, candidates.stop
            log.active_prefill_tokens.append(tuple(state.active_prefill_tokens[lo:hi]))
            log.active_blocks.append(tuple(state.active_blocks[lo:hi]))
            log.active_requests.append(tuple(state.active_requests[lo:hi]))
        else:
            log.active_prefill_tokens.append(tuple([state.active_prefill_tokens[w] for w in candidates]))
            log.active_blocks.append(tuple([state.active_blocks[w] for w in candidates]))
            log.active_requests.append(tuple([state.active_requests[w] for w in candidates]))
        log.logits.append(tuple(logits))
