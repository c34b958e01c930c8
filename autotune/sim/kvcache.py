"""Paged KV blocks with a prefix cache keyed by block-hash chains and LRU eviction (vLLM-style).

A block is either private to one sequence (being filled, or a partial last block), hashed and
pinned by one or more sequences, or hashed and unpinned — still cached, evictable in LRU order.
"""

from __future__ import annotations

from collections import OrderedDict


class KvCache:
    __slots__ = ("total", "private", "refs", "lru", "hits_blocks", "lookups_blocks")

    def __init__(self, total_blocks: int) -> None:
        self.total = total_blocks
        self.private = 0
        self.refs: dict[int, int] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.hits_blocks = 0
        self.lookups_blocks = 0

    @property
    def used(self) -> int:
        """Blocks pinned by running sequences (the KV in use)."""
        return self.private + len(self.refs)

    @property
    def free(self) -> int:
        return self.total - self.private - len(self.refs) - len(self.lru)

    @property
    def cached_blocks(self) -> int:
        """Size of the radix tree the router sees for this worker."""
        return len(self.refs) + len(self.lru)

    def match(self, hashes: tuple[int, ...]) -> int:
        """Consecutive leading blocks of ``hashes`` present in the cache."""
        refs, lru = self.refs, self.lru
        n = 0
        for h in hashes:
            if h in refs or h in lru:
                n += 1
            else:
                break
        return n

    def acquire(self, hashes: tuple[int, ...]) -> None:
        """Pin cached blocks (a prefix hit) for a sequence."""
        refs, lru = self.refs, self.lru
        for h in hashes:
            if h in refs:
                refs[h] += 1
            else:
                del lru[h]
                refs[h] = 1

    def alloc(self, n: int) -> bool:
        """Allocate ``n`` private blocks, evicting unpinned cached blocks LRU-first if needed."""
        short = n - self.free
        if short > 0:
            if short > len(self.lru):
                return False
            lru = self.lru
            for _ in range(short):
                lru.popitem(last=False)
        self.private += n
        return True

    def publish(self, hashes: tuple[int, ...]) -> None:
        """Turn filled private blocks into hashed, pinned blocks (prefill finished them)."""
        refs, lru = self.refs, self.lru
        for h in hashes:
            self.private -= 1
            if h in refs:
                refs[h] += 1  # computed concurrently elsewhere: keep one copy
            elif h in lru:
                del lru[h]
                refs[h] = 1
            else:
                refs[h] = 1

    def release(self, hashes: tuple[int, ...], private: int) -> None:
        """A sequence leaves: its hashed blocks stay cached (LRU), private ones are freed."""
        refs, lru = self.refs, self.lru
        for h in hashes:
            c = refs[h] - 1
            if c:
                refs[h] = c
            else:
                del refs[h]
                lru[h] = None
        self.private -= private
