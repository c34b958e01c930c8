"""A loaded trace, sliced and scaled, and the windows of it that load points replay.

Prefix sharing: a request's prompt is cut into trace blocks of ``block_tokens``; trace block j of a
request is identified by its *prefix id*, the interned chain of its hash ids 0..j (two requests
share block j only when they share every block before it too, as a paged KV cache's block-hash chain
does). Tokens past the request's hash ids are its own. The simulator's cache blocks (any size) get
their hash from the prefix id of the last trace block they touch (``TraceBlocks.block_hashes``); the
live burst renders each prefix id as the same tokens (``autotune.traces.prompts``), so both sides see
the same sharing.

Running out: a point longer than the slice replays it again (pass k = 1, 2, ...), every arrival
shifted by k × the slice's period. Blocks shared by two or more requests of the slice keep their
identity in every pass (a system prompt recurs); blocks of one request only are fresh in each pass
(a repeated pass does not hit the cache it filled itself).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autotune.errors import InputError
from autotune.traces.formats import read_rows
from autotune.traces.spec import TraceSpec


@dataclass(frozen=True)
class Trace:
    """The replayed slice: arrays in time order, one entry per request."""

    spec: TraceSpec
    arrival_s: np.ndarray  # after slicing and rate scaling, from 0
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_ids: tuple[np.ndarray, ...]  # per request: the prefix id of each trace block its hash ids cover
    shared: np.ndarray  # per prefix id: used by two or more requests of the slice
    template: np.ndarray  # prefix group: the first block's prefix id ranked by first use; -1 if not shared
    period_s: float  # how far each pass over the slice shifts its arrivals
    skipped: int
    sha256: str  # of the file: a study resumed on an edited trace is another study

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def block_tokens(self) -> int:
        return self.spec.block_tokens

    @property
    def max_request_tokens(self) -> int:
        return int((self.input_tokens + self.output_tokens).max())

    def mean_shared_tokens(self) -> float:
        """Mean tokens per request in blocks another request of the slice shares (the reusable prefix)."""
        b = self.block_tokens
        tok = [
            min(int(self.shared[p].sum()) * b, int(n)) for p, n in zip(self.prefix_ids, self.input_tokens, strict=True)
        ]
        return float(np.mean(tok))

    def reuse_rate(self) -> float:
        """Share of input tokens an infinite prefix cache would serve: blocks seen in an earlier request."""
        seen: set[int] = set()
        hit = 0
        b = self.block_tokens
        for pids, isl in zip(self.prefix_ids, self.input_tokens.tolist(), strict=True):
            known = 0
            for q in pids.tolist():
                if q not in seen:
                    break
                known += 1
            seen.update(pids.tolist())
            hit += min(known * b, isl)
        return hit / float(self.input_tokens.sum())

    def window(self, first: int, n: int) -> TraceWindow:
        """Requests ``first`` .. ``first + n`` of the replay: the slice, then its passes."""
        k = np.arange(first, first + n, dtype=np.int64)
        idx, passes = k % len(self), k // len(self)
        return TraceWindow(self, idx, passes)


@dataclass(frozen=True)
class TraceWindow:
    trace: Trace
    index: np.ndarray  # row of the slice
    passes: np.ndarray  # which pass over the slice

    @property
    def arrival_s(self) -> np.ndarray:
        return self.trace.arrival_s[self.index] + self.passes * self.trace.period_s

    @property
    def input_tokens(self) -> np.ndarray:
        return self.trace.input_tokens[self.index]

    @property
    def output_tokens(self) -> np.ndarray:
        return self.trace.output_tokens[self.index]

    @property
    def template(self) -> np.ndarray:
        return self.trace.template[self.index]

    def blocks(self) -> TraceBlocks:
        return TraceBlocks(self.trace, self.index, self.passes)


@dataclass(frozen=True)
class TraceBlocks:
    """The prefix identity of each request's blocks, for the simulator's cache and the live prompts."""

    trace: Trace
    index: np.ndarray
    passes: np.ndarray

    def block_keys(self, k: int) -> list[tuple[int, int]]:
        """(content id, pass) of each trace block of request ``k``: a shared block's pass is 0 (same in
        every pass); a private block's content id is ``-(row + 1) - j·n`` past the hash ids."""
        t, row, p = self.trace, int(self.index[k]), int(self.passes[k])
        pids = t.prefix_ids[row]
        n_blocks = -(-int(t.input_tokens[row]) // t.block_tokens)
        keys = [(int(q), 0 if t.shared[q] else p) for q in pids[:n_blocks]]
        keys += [(-(row + 1) - j * len(t), p) for j in range(len(keys), n_blocks)]
        return keys

    def block_hashes(self, k: int, block_size: int) -> tuple[int, ...]:
        """Hashes of request ``k``'s full cache blocks of ``block_size`` tokens: each from the last trace
        block it touches (which stands for every token before it)."""
        keys = self.block_keys(k)
        b, tb = block_size, self.trace.block_tokens
        n_full = int(self.trace.input_tokens[int(self.index[k])]) // b
        out = []
        for i in range(n_full):
            q, p = keys[((i + 1) * b - 1) // tb]
            out.append(hash((q, p, i)))
        return tuple(out)


def _intern_prefixes(hash_ids: list[list[Hashable]], input_tokens: np.ndarray, block_tokens: int) -> list[np.ndarray]:
    """Per request, the prefix id of each block its hash ids cover: equal ids, equal prefixes."""
    ids: dict[tuple[int, Hashable], int] = {}
    out = []
    for hs, isl in zip(hash_ids, input_tokens.tolist(), strict=True):
        parent, chain = -1, []
        for h in hs[: -(-isl // block_tokens)]:
            parent = ids.setdefault((parent, h), len(ids))
            chain.append(parent)
        out.append(np.asarray(chain, dtype=np.int64))
    return out


def build_trace(spec: TraceSpec, path: Path) -> Trace:
    """Read, sort by time, slice ``[start_s, end_s)`` and scale the trace at ``path``."""
    rows = read_rows(spec, path)
    t = np.asarray(rows.time_s, dtype=float)
    order = np.argsort(t, kind="stable")
    rel = t[order] - t[order[0]]
    keep = order[(rel >= spec.start_s) & ((rel < spec.end_s) if spec.end_s is not None else True)]
    if not len(keep):
        raise InputError(
            f"{path}: workload.trace: no request in [{spec.start_s:g}, {spec.end_s if spec.end_s is not None else 'end'}) s "
            f"(the trace spans {rel[-1]:g} s)"
        )
    isl = np.asarray(rows.input_tokens, dtype=np.int64)[keep]
    osl = np.asarray(rows.output_tokens, dtype=np.int64)[keep]
    prefix_ids = _intern_prefixes([rows.hash_ids[i] for i in keep], isl, spec.block_tokens)
    uses = np.zeros(max((int(p.max()) + 1 for p in prefix_ids if len(p)), default=0), dtype=np.int64)
    for p in prefix_ids:
        uses[p] += 1  # a prefix id appears at most once per request (its chain position is fixed)
    shared = uses >= 2
    first_block = [int(p[0]) if len(p) and shared[p[0]] else -1 for p in prefix_ids]
    rank = {q: i for i, q in enumerate(dict.fromkeys(q for q in first_block if q >= 0))}
    template = np.asarray([rank.get(q, -1) for q in first_block], dtype=np.int64)
    arrival = (t[keep] - t[order[0]] - spec.start_s) / spec.rate_scale
    span = (
        (spec.end_s - spec.start_s) if spec.end_s is not None else _open_span(rel[rel >= spec.start_s] - spec.start_s)
    )
    return Trace(
        spec,
        arrival,
        isl,
        osl,
        tuple(prefix_ids),
        shared,
        template,
        span / spec.rate_scale,
        rows.skipped,
        _sha256(path),
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_span(rel: np.ndarray) -> float:
    """A slice without an end lasts to its last request plus one mean gap (so passes do not collide)."""
    gap = (rel[-1] - rel[0]) / (len(rel) - 1) if len(rel) > 1 else 1.0
    return float(rel[-1] + max(gap, 1e-3))


@functools.lru_cache(maxsize=8)
def _cached(spec: TraceSpec, path: str, mtime_ns: int, size: int) -> Trace:
    return build_trace(spec, Path(path))


def load_trace(spec: TraceSpec) -> Trace:
    """The trace ``spec`` names, read once per process while the file is unchanged."""
    p = Path(spec.path)
    try:
        st = p.stat()
    except OSError:
        return build_trace(spec, p)  # reports the missing or unreadable file
    return _cached(spec, str(p), st.st_mtime_ns, st.st_size)
