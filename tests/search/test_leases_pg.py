"""The GPU lease table in a real PostgreSQL: concurrent acquirers never exceed the budget; a dead holder's lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from autotune.search.leases import Busy, ClusterShape, Lease
from autotune.search.leases_pg import PgLeases
from autotune.search.workers import rdb_url
from tests.conftest import ROOT
from tests.pg_cluster import PgCluster, cluster_or_skip

pytestmark = pytest.mark.slow

SHAPE = ClusterShape(nodes=3, gpus_per_node=8)  # 24 GPUs
DEADLINE_S = 300  # generous: a busy 2-core machine


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    yield from cluster_or_skip()


def _leases(url: str, worker: str, ttl_s: float = 60) -> PgLeases:
    return PgLeases(create_engine(rdb_url(url)), "pool", worker, SHAPE, ttl_s)


def test_concurrent_acquirers_never_exceed_the_budget(pg: PgCluster) -> None:
    """Six workers, each with its own connection, take and give back graphs of 8–24 GPUs as fast as they can."""
    url = pg.create_db("concurrent")
    shapes = [[8], [4, 4], [8, 8], [8, 8, 8], [4, 8], [8, 4, 4]]
    held: dict[str, int] = {}
    peak = [0]
    busy = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            leases = _leases(url, f"w{i}")
            for k in range(12):
                holder, tps = f"t{i}-{k}", shapes[(i + k) % len(shapes)]
                while not isinstance(got := leases.try_acquire(holder, tps), Lease):
                    assert isinstance(got, Busy) and got.need == sum(tps)
                    with lock:
                        busy[0] += 1
                    time.sleep(0.01)
                assert got.gpus == sum(tps) and all(g <= SHAPE.gpus_per_node for g in got.gpus_by_node.values())
                with lock:  # counted after taking, uncounted before giving back: ≤ what the table holds
                    held[holder] = got.gpus
                    peak[0] = max(peak[0], sum(held.values()))
                time.sleep(0.02)
                with lock:
                    del held[holder]
                leases.release(holder)
            leases.engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert not errors, errors
    assert 0 < peak[0] <= SHAPE.total
    assert busy[0] > 0  # the budget was contended, so the check above means something
    assert _leases(url, "probe").held() == []
    print(f"\nlease table: 6 acquirers x 12 graphs, peak {peak[0]}/{SHAPE.total} GPUs, {busy[0]} busy answers")


def test_the_combined_graphs_pack_per_node(pg: PgCluster) -> None:
    """Free GPUs scattered over nodes do not fit a TP8 worker: 4 + 4 + 4 free of 24 is not one free node."""
    url = pg.create_db("packing")
    a, b = _leases(url, "a"), _leases(url, "b")
    for i in range(6):  # two TP4 graphs per node
        assert isinstance(a.try_acquire(f"t{i}", [4]), Lease)
    for i in (0, 2, 4):  # one of each pair ends: 4 GPUs free on every node
        a.release(f"t{i}")
    got = b.try_acquire("t9", [8])
    assert isinstance(got, Busy) and "12 of 24 are leased" in got.line("trial #9 1A8")
    both = b.try_acquire("t10", [4, 4, 4])  # three TP4 workers do fit, one per node
    assert isinstance(both, Lease) and both.gpus_by_node == {0: 4, 1: 4, 2: 4}


def test_first_come_first_served_with_backfill(pg: PgCluster) -> None:
    """A worker that frees its GPUs and asks again at once does not overtake a trial that asked first and
    fits now; a small trial still runs beside a large one waiting for more than is free."""
    url = pg.create_db("fairness")
    a, b, c = _leases(url, "a"), _leases(url, "b"), _leases(url, "c")
    assert isinstance(a.try_acquire("t0", [8, 8, 8]), Lease)
    assert isinstance(b.try_acquire("t1", [8, 8, 8]), Busy)  # b queues for the whole cluster
    a.release("t0")
    again = a.try_acquire("t2", [8, 8])  # a asks again first: b's older request fits now, so b goes first
    assert isinstance(again, Busy) and "waits behind trial t1 (b)" in again.line("trial #2 2A8")
    assert isinstance(b.try_acquire("t1", [8, 8, 8]), Lease)
    assert isinstance(a.try_acquire("t2", [8, 8]), Busy)  # queued behind nothing now: it does not fit
    b.release("t1")
    assert isinstance(b.try_acquire("t3", [8]), Busy)  # a's t2 asked first and fits: b waits its turn
    assert isinstance(a.try_acquire("t2", [8, 8]), Lease)
    assert isinstance(c.try_acquire("t4", [8, 8]), Busy)  # c queues: 8 free, it needs 16
    assert isinstance(b.try_acquire("t3", [8]), Lease)  # backfill: the older t4 does not fit, t3 does


_HOLDER = """
import sys, time, threading
from sqlalchemy import create_engine
from autotune.search.leases import ClusterShape, Lease
from autotune.search.leases_pg import PgLeases
from autotune.search.workers import rdb_url
leases = PgLeases(create_engine(rdb_url(sys.argv[1])), "pool", "doomed", ClusterShape(3, 8), float(sys.argv[2]))
assert isinstance(leases.try_acquire("t0", [8, 8, 8]), Lease)
print("held", flush=True)
while True:  # the heartbeat: renew well inside the expiry
    time.sleep(0.3)
    leases.renew()
"""


def test_a_dead_holders_lease_expires(pg: PgCluster) -> None:
    url = pg.create_db("expiry")
    ttl_s = 4.0
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(ttl_s)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        other = _leases(url, "survivor")
        # alive and renewing, its lease outlives its expiry many times over
        until = time.monotonic() + 3 * ttl_s
        while time.monotonic() < until:
            assert isinstance(other.try_acquire("t1", [8]), Busy)
            assert holder.poll() is None
            time.sleep(0.5)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + DEADLINE_S
        while not isinstance(got := other.try_acquire("t1", [8, 8, 8]), Lease):
            assert time.monotonic() < deadline, got
            time.sleep(0.5)
        assert got.gpus == 24 and [lease.holder for lease in other.held()] == ["t1"]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
