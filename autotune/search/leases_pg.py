"""GPU leases in the study's PostgreSQL database, shared by every worker of the study.

One table next to Optuna's, ``autotune_gpu_leases``: a row per trial whose graph holds GPUs, with
the GPUs per node and an expiry in the database's clock (``now()``, so workers' clocks do not
matter). Taking a lease is one transaction under a transaction-scoped advisory lock on the pool:
drop expired rows, read the live ones, pack the new graph onto what they leave free, insert — so
two workers can never both take the last GPUs. The worker's heartbeat renews its leases; a worker
that dies stops renewing, and its rows expire after ``ttl_s`` (or are released as soon as a
surviving worker fails its trial and sweeps its graph).

First come, first served, with backfill: a trial that must wait is queued (``autotune_gpu_lease_waits``,
refreshed at each try, expiring like a lease), and a request is granted only when no trial that asked
earlier fits now. So a worker that frees GPUs and asks again at once cannot starve the others, while a
small trial still runs beside a large one that is waiting for more than is free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

from autotune.redact import redact_text
from autotune.search.leases import Busy, ClusterShape, Lease, place

log = logging.getLogger("autotune.search")

TABLE = "autotune_gpu_leases"
WAITS = "autotune_gpu_lease_waits"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    pool TEXT NOT NULL,
    holder TEXT NOT NULL,
    worker TEXT NOT NULL,
    gpus_by_node TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool, holder)
);
CREATE TABLE IF NOT EXISTS {WAITS} (
    pool TEXT NOT NULL,
    holder TEXT NOT NULL,
    worker TEXT NOT NULL,
    tps TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool, holder)
)"""


def _key(text: str) -> int:
    """A signed 64-bit advisory-lock key (the same in every worker)."""
    return int.from_bytes(hashlib.sha256(f"autotune-lease:{text}".encode()).digest()[:8], "big", signed=True)


def _lease(row: Any) -> Lease:
    return Lease(row.holder, row.worker, {int(n): int(g) for n, g in json.loads(row.gpus_by_node).items()})


class PgLeases:
    """This worker's view of the pool's leases (``pool``: the study name)."""

    def __init__(self, engine: Any, pool: str, worker: str, shape: ClusterShape, ttl_s: float) -> None:
        from sqlalchemy import text

        self.engine, self.pool, self.worker, self.shape, self.ttl_s = engine, pool, worker, shape, ttl_s
        self._text = text
        self._mine: set[str] = set()
        self._lock = threading.Lock()
        with engine.begin() as conn:  # concurrent CREATE TABLE IF NOT EXISTS can collide: one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key("ddl")})
            conn.execute(text(_DDL))

    def try_acquire(self, holder: str, tps: list[int]) -> Lease | Busy:
        text = self._text
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _key(self.pool)})
            expired = conn.execute(
                text(f"DELETE FROM {TABLE} WHERE pool = :p AND expires_at < now() RETURNING holder, worker"),
                {"p": self.pool},
            ).all()
            for row in expired:
                log.warning(
                    "the GPU lease of trial %s (worker %s) expired without renewal; its GPUs are free again",
                    row.holder,
                    row.worker,
                )
            rows = conn.execute(
                text(f"SELECT holder, worker, gpus_by_node FROM {TABLE} WHERE pool = :p ORDER BY acquired_at"),
                {"p": self.pool},
            ).all()
            held = [_lease(r) for r in rows]
            mine = next((lease for lease in held if lease.holder == holder), None)
            if mine is not None:
                return mine
            by_node = place(tps, held, self.shape)
            first = self._first_waiter_that_fits(conn, holder, held) if by_node is not None else None
            if by_node is None or first is not None:
                self._queue(conn, holder, tps)
                return Busy(sum(tps), self.shape.total, tuple(held), behind=first or "")
            conn.execute(text(f"DELETE FROM {WAITS} WHERE pool = :p AND holder = :h"), {"p": self.pool, "h": holder})
            lease = Lease(holder, self.worker, by_node)
            conn.execute(
                text(
                    f"INSERT INTO {TABLE} (pool, holder, worker, gpus_by_node, gpus, expires_at) "
                    "VALUES (:p, :h, :w, :g, :n, now() + make_interval(secs => :ttl))"
                ),
                {
                    "p": self.pool,
                    "h": holder,
                    "w": self.worker,
                    "g": json.dumps({str(k): v for k, v in by_node.items()}),
                    "n": lease.gpus,
                    "ttl": float(self.ttl_s),
                },
            )
        with self._lock:
            self._mine.add(holder)
        return lease

    def _first_waiter_that_fits(self, conn: Any, holder: str, held: list[Lease]) -> str | None:
        """The oldest other trial waiting (not expired) that would fit on what ``held`` leaves free."""
        text = self._text
        conn.execute(text(f"DELETE FROM {WAITS} WHERE pool = :p AND expires_at < now()"), {"p": self.pool})
        mine = conn.execute(
            text(f"SELECT since FROM {WAITS} WHERE pool = :p AND holder = :h"), {"p": self.pool, "h": holder}
        ).first()
        older = conn.execute(
            text(
                f"SELECT holder, worker, tps FROM {WAITS} WHERE pool = :p AND holder <> :h "
                "AND (CAST(:since AS TIMESTAMPTZ) IS NULL OR since < :since) ORDER BY since"
            ),
            {"p": self.pool, "h": holder, "since": mine.since if mine is not None else None},
        ).all()
        for row in older:
            if place([int(t) for t in json.loads(row.tps)], held, self.shape) is not None:
                return f"trial {row.holder} ({row.worker})"
        return None

    def _queue(self, conn: Any, holder: str, tps: list[int]) -> None:
        """Join the queue (or stay in it, keeping the place): refreshed at each try, expiring like a lease."""
        conn.execute(
            self._text(
                f"INSERT INTO {WAITS} (pool, holder, worker, tps, expires_at) "
                "VALUES (:p, :h, :w, :t, now() + make_interval(secs => :ttl)) "
                "ON CONFLICT (pool, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at"
            ),
            {"p": self.pool, "h": holder, "w": self.worker, "t": json.dumps(tps), "ttl": float(self.ttl_s)},
        )

    def renew(self) -> None:
        """Push this worker's leases' expiry forward (called by its heartbeat thread)."""
        with self._lock:
            mine = sorted(self._mine)
        if not mine:
            return
        text = self._text
        try:
            with self.engine.begin() as conn:
                kept = conn.execute(
                    text(
                        f"UPDATE {TABLE} SET expires_at = now() + make_interval(secs => :ttl) "
                        "WHERE pool = :p AND holder = ANY(:hs) RETURNING holder"
                    ),
                    {"ttl": float(self.ttl_s), "p": self.pool, "hs": mine},
                ).all()
        except Exception as exc:  # noqa: BLE001 - a missed renewal is retried at the next beat
            log.warning("renewing the GPU leases %s failed: %s", mine, redact_text(str(exc)))
            return
        lost = set(mine) - {r.holder for r in kept}
        for holder in sorted(lost):
            log.warning("the GPU lease of trial %s was lost (expired or released by another worker)", holder)
        with self._lock:
            self._mine -= lost

    def release(self, holder: str) -> None:
        text = self._text
        with self.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TABLE} WHERE pool = :p AND holder = :h"), {"p": self.pool, "h": holder})
            conn.execute(text(f"DELETE FROM {WAITS} WHERE pool = :p AND holder = :h"), {"p": self.pool, "h": holder})
        with self._lock:
            self._mine.discard(holder)

    def holds(self, holder: str) -> bool:
        with self._lock:
            return holder in self._mine

    def held(self) -> list[Lease]:
        """Every live lease of the pool (any worker's)."""
        text = self._text
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT holder, worker, gpus_by_node FROM {TABLE} "
                    "WHERE pool = :p AND expires_at >= now() ORDER BY acquired_at"
                ),
                {"p": self.pool},
            ).all()
        return [_lease(r) for r in rows]

    def close(self) -> None:
        """Release whatever this worker still holds (its graphs are gone or being swept)."""
        with self._lock:
            mine = sorted(self._mine)
        for holder in mine:
            try:
                self.release(holder)
            except Exception as exc:  # noqa: BLE001 - the lease expires by itself
                log.warning("releasing the GPU lease of trial %s failed: %s", holder, redact_text(str(exc)))
