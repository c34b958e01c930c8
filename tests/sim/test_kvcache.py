"""Paged KV blocks with a prefix cache: hits, LRU eviction, pinning, publish/release accounting."""

from __future__ import annotations

from autotune.sim.kvcache import KvCache


def check_invariants(c: KvCache) -> None:
    assert c.private >= 0 and c.free >= 0
    assert c.private + len(c.refs) + len(c.lru) + c.free == c.total
    assert not set(c.refs) & set(c.lru)
    assert all(n > 0 for n in c.refs.values())


def fill(c: KvCache, hashes: tuple[int, ...]) -> None:
    """A sequence computes ``hashes`` (allocates, publishes) and leaves (release)."""
    assert c.alloc(len(hashes))
    c.publish(hashes)
    c.release(hashes, 0)
    check_invariants(c)


def test_prefix_hits_are_leading_and_consecutive() -> None:
    c = KvCache(10)
    fill(c, (1, 2, 3))
    assert c.match((1, 2, 3, 4)) == 3
    assert c.match((1, 2, 9, 3)) == 2  # a chain: the hit stops at the first miss
    assert c.match((9, 1, 2)) == 0
    assert c.match(()) == 0
    assert c.cached_blocks == 3 and c.used == 0 and c.free == 7


def test_publish_release_accounting() -> None:
    c = KvCache(8)
    assert c.alloc(3)  # a sequence's 3 private blocks
    assert (c.private, c.used, c.free) == (3, 3, 5)
    c.publish((1, 2))  # prefill filled two full blocks; the partial third stays private
    assert (c.private, c.used, c.refs, c.free) == (1, 3, {1: 1, 2: 1}, 5)
    c.acquire((1, 2))  # a second sequence hits both blocks
    assert c.refs == {1: 2, 2: 2} and c.used == 3
    c.release((1, 2), 1)  # the first leaves with its private block
    assert (c.private, c.refs, list(c.lru)) == (0, {1: 1, 2: 1}, [])
    c.release((1, 2), 0)  # the second leaves: both blocks stay cached, unpinned
    assert (c.used, list(c.lru), c.free, c.cached_blocks) == (0, [1, 2], 6, 2)
    check_invariants(c)


def test_publish_of_a_block_computed_elsewhere_keeps_one_copy() -> None:
    c = KvCache(6)
    assert c.alloc(2) and c.alloc(2)  # two sequences compute the same two blocks concurrently
    c.publish((1, 2))
    c.publish((1, 2))
    assert c.refs == {1: 2, 2: 2} and c.private == 0 and c.free == 4  # the duplicate copy is freed
    fill(c, (3,))
    c.release((1, 2), 0)
    c.release((1, 2), 0)
    assert list(c.lru) == [3, 1, 2]
    # publishing a hash that sits unpinned in the LRU pins it again
    assert c.alloc(1)
    c.publish((3,))
    assert c.refs == {3: 1} and list(c.lru) == [1, 2]
    check_invariants(c)


def test_lru_eviction_order() -> None:
    c = KvCache(4)
    fill(c, (1,))
    fill(c, (2,))
    fill(c, (3,))
    fill(c, (4,))
    assert c.free == 0 and list(c.lru) == [1, 2, 3, 4]
    c.acquire((2,))  # a hit on 2 pins it ...
    c.release((2,), 0)  # ... and its release makes it the most recently used
    assert list(c.lru) == [1, 3, 4, 2]
    assert c.alloc(2)  # evicts the two least recently used: 1 and 3
    assert list(c.lru) == [4, 2] and c.match((1,)) == 0 and c.match((3,)) == 0 and c.match((4,)) == 1
    check_invariants(c)


def test_pinned_blocks_are_not_evicted() -> None:
    c = KvCache(4)
    fill(c, (1, 2))
    c.acquire((1, 2))  # a running sequence pins both
    assert c.alloc(2)  # takes the 2 free blocks
    assert not c.alloc(1)  # nothing free, nothing evictable: refused, state unchanged
    assert (c.private, c.refs, len(c.lru)) == (2, {1: 1, 2: 1}, 0)
    c.release((1, 2), 0)
    assert c.alloc(1)  # now block 1 (least recent) can go
    assert c.match((1, 2)) == 0 and c.match((2,)) == 1
    check_invariants(c)


def test_alloc_refuses_without_partial_eviction() -> None:
    """A request that cannot be met evicts nothing: the cache must stay warm for the retry."""
    c = KvCache(5)
    fill(c, (1, 2, 3))
    assert c.alloc(2)
    assert not c.alloc(4)  # needs 4, only 3 evictable
    assert list(c.lru) == [1, 2, 3] and c.private == 2
    assert c.alloc(3) and len(c.lru) == 0 and c.private == 5
    check_invariants(c)


def test_hit_counters_untouched_by_match() -> None:
    c = KvCache(4)
    fill(c, (1,))
    c.match((1,))
    assert (c.hits_blocks, c.lookups_blocks) == (0, 0)  # the engine counts hits at admission
