"""GPU leases: live trials run side by side only while their graphs fit the cluster together.

Before a live trial deploys, its loop leases the GPUs its topology needs, per node: the profile's
cluster is ``nodes`` × ``gpus_per_node``, a worker's TP group sits on one node (or takes whole
nodes), and the new graph is packed onto what the graphs already leased leave free
(``feasibility.pack_onto``), so the combined set of running graphs always packs. A trial that
does not fit waits (``Busy.line`` says why) and is retried with backoff; the lease is released
once its graph is deleted and gone.

Two ledgers: ``LocalLeases`` in the process for ``run --jobs N`` (one process runs every trial of
its study: the results directory is locked), and ``leases_pg.PgLeases`` in the shared PostgreSQL
database for ``autotune worker``, renewed by the workers' heartbeat and expiring when a worker dies.
Simulated trials take no lease: each runs on its own simulated copy of the cluster.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from autotune.feasibility import pack_onto
from autotune.profile import Profile
from autotune.topology import Topology

# trial user attrs (and trials.csv columns): how long the trial waited for GPUs, what it held
LEASE_WAIT_S, LEASE_GPUS, LEASE_NODES = "lease_wait_s", "lease_gpus", "lease_nodes"
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 15.0  # a waiting trial retries after 1, 2, 4 … s, then every 15 s


@dataclass(frozen=True)
class Lease:
    """GPUs one trial's graph holds: ``gpus_by_node`` maps node index → GPUs."""

    holder: str  # the trial, as its graphs are labelled ("t12")
    worker: str
    gpus_by_node: dict[int, int]

    @property
    def gpus(self) -> int:
        return sum(self.gpus_by_node.values())

    def nodes_text(self) -> str:
        """``n0:8,n2:4``: GPUs held on each node."""
        return ",".join(f"n{n}:{g}" for n, g in sorted(self.gpus_by_node.items()))


@dataclass(frozen=True)
class Busy:
    """Why a topology does not fit now: the GPUs it needs and the leases in the way."""

    need: int
    total: int
    held: tuple[Lease, ...]
    behind: str = ""  # an older waiting trial that fits now goes first (first come, first served)

    def line(self, what: str) -> str:
        used = sum(lease.gpus for lease in self.held)
        holders = "; ".join(f"{lease.holder} by {lease.worker}: {lease.nodes_text()}" for lease in self.held)
        if self.behind:
            return f"{what} needs {self.need} GPUs and waits behind {self.behind}, which asked first and fits now"
        return (
            f"{what} needs {self.need} GPUs and waits: {used} of {self.total} are leased ({holders}), "
            f"{self.total - used} free do not fit it"
        )


@dataclass(frozen=True)
class ClusterShape:
    nodes: int
    gpus_per_node: int

    @property
    def total(self) -> int:
        return self.nodes * self.gpus_per_node

    @classmethod
    def of(cls, profile: Profile) -> ClusterShape:
        return cls(profile.cluster.nodes, profile.cluster.gpus_per_node)


def place(tps: list[int], held: list[Lease], shape: ClusterShape) -> dict[int, int] | None:
    """GPUs per node for workers of these TPs on what ``held`` leaves free; None if they do not fit."""
    per_node = shape.gpus_per_node
    free = [per_node] * shape.nodes
    for lease in held:
        for node, gpus in lease.gpus_by_node.items():
            if 0 <= node < shape.nodes:
                free[node] -= gpus
    placement = pack_onto(tps, free, per_node)
    if placement is None:
        return None
    by_node: dict[int, int] = {}
    for tp, nodes in zip(tps, placement, strict=True):
        for node in nodes:
            by_node[node] = by_node.get(node, 0) + min(tp, per_node)
    return by_node


def topology_tps(topology: Topology) -> list[int]:
    return [tp for _, tp in topology.worker_tps()]


class Leases(Protocol):
    """A ledger of the cluster's GPUs shared by the trials of one study."""

    def try_acquire(self, holder: str, tps: list[int]) -> Lease | Busy: ...

    def renew(self) -> None: ...

    def release(self, holder: str) -> None: ...

    def holds(self, holder: str) -> bool:
        """Whether this process took that lease (its graph is this process's to release)."""
        ...

    def close(self) -> None: ...


class LocalLeases:
    """The ledger of one process (``run --jobs N``): its trials are all the trials of the study."""

    def __init__(self, shape: ClusterShape, worker: str) -> None:
        self.shape, self.worker = shape, worker
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def try_acquire(self, holder: str, tps: list[int]) -> Lease | Busy:
        with self._lock:
            if holder in self._held:
                return self._held[holder]
            held = list(self._held.values())
            by_node = place(tps, held, self.shape)
            if by_node is None:
                return Busy(sum(tps), self.shape.total, tuple(held))
            lease = self._held[holder] = Lease(holder, self.worker, by_node)
            return lease

    def renew(self) -> None:
        """Nothing to renew: the process that holds the leases is the one that would lose them."""

    def release(self, holder: str) -> None:
        with self._lock:
            self._held.pop(holder, None)

    def holds(self, holder: str) -> bool:
        with self._lock:
            return holder in self._held

    def held(self) -> list[Lease]:
        with self._lock:
            return list(self._held.values())

    def close(self) -> None:
        with self._lock:
            self._held.clear()
