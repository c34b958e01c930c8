"""The load burst: an async, streaming, OpenAI-compatible client with closed- and open-loop load.

Why hand-rolled rather than aiperf: a trial needs per-request records joined with the router's
decisions (response ids), bounded runs that survive 503s, dropped streams and dead workers, and
little enough client CPU that a 2-core machine measures the server, not the client. Hence:
bodies pre-serialised, SSE parsed on raw bytes (one ``json.loads`` per request, for the usage
chunk), and timestamps taken once per network read.

Times are ``time.perf_counter()`` seconds; ``BurstResult.t0_wall`` anchors them to the wall
clock so server log timestamps can be placed on the same axis.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import numpy as np

_ID = re.compile(rb'"id":"(?:chatcmpl-|cmpl-)?([^"]+)"')
_TOKEN_MARKERS = (b'"content":"', b'"text":"')
_EMPTY_MARKERS = (b'"content":""', b'"text":""')  # e.g. the completions stream's finish chunk


@dataclass
class RequestRecord:
    """What the client saw of one request (times in seconds since the burst start)."""

    index: int
    client: int
    send_s: float = float("nan")
    first_token_s: float = float("nan")
    end_s: float = float("nan")
    chunk_times: list[float] = field(default_factory=list)  # arrival of every content chunk
    response_id: str = ""
    prompt_tokens: int = -1
    completion_tokens: int = -1
    cached_tokens: int = -1
    http_status: int = 0
    status: str = "pending"  # ok | rejected | error | timeout | cancelled
    error: str = ""

    @property
    def output_tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens >= 0 else len(self.chunk_times)

    def itl_ms(self) -> tuple[float, float]:
        """(mean, max) inter-token latency; the mean is aiperf's (end − first token)/(tokens − 1)."""
        n = self.output_tokens
        if self.status != "ok" or n < 2 or len(self.chunk_times) < 2:
            return float("nan"), float("nan")
        mean = (self.chunk_times[-1] - self.first_token_s) / (n - 1) * 1e3
        return mean, float(np.max(np.diff(self.chunk_times))) * 1e3


@dataclass
class BurstConfig:
    base_url: str
    api: str = "completions"  # or "chat"
    concurrency: int = 16  # closed loop: clients; open loop: cap on requests in flight
    arrivals_s: np.ndarray | None = None  # open loop send times; None = closed loop
    # closed loop: seconds a client pauses after request i's response before its next (None = none)
    think_s: Callable[[int], float] | None = None
    request_timeout_s: float = 60.0
    max_wall_s: float = 600.0
    connect_timeout_s: float = 5.0

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"


@dataclass
class BurstResult:
    records: list[RequestRecord]
    t0_wall: float  # time.time() at burst start
    t0_perf: float  # time.perf_counter() at burst start
    duration_s: float
    cpu_s: float  # this process's CPU time spent during the burst
    aborted: str = ""  # reason the burst was stopped early ("" = ran to completion)
    wall_bound: bool = False  # True: sending stopped at ``BurstConfig.max_wall_s`` with requests left
    stalled_s: float = 0.0  # client time spent waiting for ``grow`` to answer (0: it answered in time)


@dataclass(frozen=True)
class Growth:
    """What ``grow`` answers a running burst: more requests (and, open loop, their send times), or none."""

    bodies: Sequence[bytes] = ()
    arrivals_s: np.ndarray | None = None


Grow = Callable[[list["RequestRecord"]], Growth]


class BurstAborted(Exception):
    """Raised by a watchdog to stop the burst (e.g. a worker died)."""


def _parse_events(rec: RequestRecord, buf: bytes, now: float) -> tuple[bytes, bool]:
    """Consume complete SSE events from ``buf``; returns (rest, done)."""
    done = False
    while True:
        cut = buf.find(b"\n\n")
        if cut < 0:
            return buf, done
        event, buf = buf[:cut], buf[cut + 2 :]
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                if line.startswith(b"event:") and b"error" in line:
                    rec.status, rec.error = "error", "server sent an error event"
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            if not rec.response_id:
                m = _ID.search(data)
                if m:
                    rec.response_id = m.group(1).decode()
            if b'"usage":{' in data:
                _read_usage(rec, data)
            if any(m in data for m in _TOKEN_MARKERS) and not any(m in data for m in _EMPTY_MARKERS):
                if not rec.chunk_times:
                    rec.first_token_s = now
                rec.chunk_times.append(now)
            elif data.startswith(b'{"error"') or b'"error":{' in data:
                rec.status, rec.error = "error", _short(data)


def _read_usage(rec: RequestRecord, data: bytes) -> None:
    try:
        usage = json.loads(data).get("usage") or {}
    except ValueError:
        return
    rec.prompt_tokens = int(usage.get("prompt_tokens", -1))
    rec.completion_tokens = int(usage.get("completion_tokens", -1))
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    rec.cached_tokens = int(cached) if cached is not None else -1


def _short(data: bytes, limit: int = 160) -> str:
    return data[:limit].decode(errors="replace").replace("\n", " ")


async def _one(client: httpx.AsyncClient, cfg: BurstConfig, body: bytes, rec: RequestRecord, t0: float) -> None:
    clock = time.perf_counter
    rec.send_s = clock() - t0
    try:
        async with asyncio.timeout(cfg.request_timeout_s):
            async with client.stream(
                "POST", cfg.path, content=body, headers={"content-type": "application/json"}
            ) as resp:
                rec.http_status = resp.status_code
                if resp.status_code != 200:
                    text = (await resp.aread())[:200]
                    rec.status = "rejected" if resp.status_code == 503 else "error"
                    rec.error = f"HTTP {resp.status_code}: {_short(text)}"
                    rec.end_s = clock() - t0
                    return
                buf, done = b"", False
                async for chunk in resp.aiter_raw():
                    buf, done = _parse_events(rec, buf + chunk, clock() - t0)
                rec.end_s = clock() - t0
                if rec.status == "pending":
                    if done and rec.output_tokens > 0:
                        rec.status = "ok"
                    else:
                        rec.status, rec.error = "error", "stream ended before [DONE]" if not done else "no tokens"
    except TimeoutError:
        rec.status, rec.error, rec.end_s = "timeout", f"no completion within {cfg.request_timeout_s:g}s", clock() - t0
    except httpx.TimeoutException as exc:
        rec.status, rec.error, rec.end_s = "timeout", type(exc).__name__, clock() - t0
    except (httpx.HTTPError, OSError) as exc:
        rec.status, rec.error, rec.end_s = "error", f"{type(exc).__name__}: {exc}"[:200], clock() - t0
    except asyncio.CancelledError:
        rec.status, rec.error, rec.end_s = "cancelled", "burst stopped", clock() - t0
        raise


class _Feed:
    """The burst's requests, handed out in send order; ``grow`` may add more while the burst runs.

    When no more than ``lookahead`` requests are left unsent, ``grow`` is called with the records so
    far, in a thread (off the event loop that times the streams), so the clients keep sending while
    it decides; a client that runs out before it answers waits (``stalled_s``). Past ``deadline``
    nothing more is handed out.
    """

    def __init__(
        self,
        bodies: Sequence[bytes],
        arrivals_s: np.ndarray | None,
        grow: Grow | None,
        lookahead: int,
        deadline: float,
    ) -> None:
        self.segments: list[Sequence[bytes]] = [bodies]  # a continuation's bodies may render lazily
        self.starts = [0]
        self.size = len(bodies)
        self.arrivals = [float(a) for a in arrivals_s] if arrivals_s is not None else None
        self.records = [RequestRecord(i, -1) for i in range(self.size)]
        self.grow, self.lookahead, self.deadline = grow, lookahead, deadline
        self.next = 0
        self.final = grow is None
        self.wall_bound = False
        self.stalled_s = 0.0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def body(self, i: int) -> bytes:
        k = bisect.bisect_right(self.starts, i) - 1
        return self.segments[k][i - self.starts[k]]

    async def take(self) -> int | None:
        """The next request to send, or None when the burst is over."""
        if not self.final and self.task is None and self.size - self.next <= self.lookahead:
            self.task = asyncio.create_task(self._grow())
        waited_from = 0.0
        while self.next >= self.size and not self.final:
            self.changed.clear()
            waited_from = waited_from or time.perf_counter()
            await self.changed.wait()
        if waited_from:
            self.stalled_s += time.perf_counter() - waited_from
        if self.next >= self.size:
            return None
        if time.perf_counter() > self.deadline:
            self.final = self.wall_bound = True
            return None
        self.next += 1
        return self.next - 1

    def _extend(self, more: Growth) -> None:
        if not more.bodies:
            self.final = True
            return
        if self.arrivals is not None:
            if more.arrivals_s is None or len(more.arrivals_s) != len(more.bodies):
                raise ValueError("an open-loop continuation needs a send time per request")
            self.arrivals.extend(float(a) for a in more.arrivals_s)
        n = self.size
        self.segments.append(more.bodies)
        self.starts.append(n)
        self.size += len(more.bodies)
        self.records.extend(RequestRecord(n + i, -1) for i in range(len(more.bodies)))

    async def _grow(self) -> None:
        assert self.grow is not None
        # the thread gives the GIL back every 0.5 ms rather than 5 ms, so stream timestamps stay sharp
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 0.0005))
        try:
            self._extend(await asyncio.to_thread(self.grow, list(self.records)))
        except Exception as exc:  # noqa: BLE001 - raised again once the burst is over
            self.error, self.final = exc, True
        finally:
            sys.setswitchinterval(interval)
            self.task = None
            self.changed.set()


async def run_burst_async(
    cfg: BurstConfig,
    bodies: Sequence[bytes],
    watchdog: Callable[[], str | None] | None = None,
    watchdog_period_s: float = 0.25,
    *,
    grow: Grow | None = None,
    lookahead: int = 0,
) -> BurstResult:
    """Send every body once (closed loop, or at ``cfg.arrivals_s``) and record what comes back.

    ``grow`` (with ``lookahead``) may extend the burst while it runs (``_Feed``). Stops sending at
    ``cfg.max_wall_s`` and cancels what is still in flight (status ``cancelled``). ``watchdog`` is
    polled periodically; a non-empty string it returns aborts the burst with that reason (recorded
    in ``BurstResult.aborted``). Only requests handed out are recorded.
    """
    # A fresh connection per request: on a kept-alive loopback connection the server's first SSE
    # chunk sits behind Nagle until our delayed ACK (~40 ms), which would inflate every TTFT.
    # A new connection starts in quick-ACK mode; connecting costs ~0.1 ms on loopback.
    limits = httpx.Limits(max_connections=cfg.concurrency + 8, max_keepalive_connections=0)
    timeout = httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s)
    aborted = ""
    cpu0 = time.process_time()
    t0_wall, t0 = time.time(), time.perf_counter()
    deadline = t0 + cfg.max_wall_s
    feed = _Feed(bodies, cfg.arrivals_s, grow, lookahead, deadline)
    # TCP_NODELAY: h11 writes headers and body separately; do not let the body wait for an ACK.
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(base_url=cfg.base_url, timeout=timeout, transport=transport) as client:
        if cfg.arrivals_s is None:
            work = asyncio.ensure_future(_closed_loop(client, cfg, feed, t0))
        else:
            work = asyncio.ensure_future(_open_loop(client, cfg, feed, t0))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=watchdog_period_s)
                reason = watchdog() if watchdog is not None else None
                if reason:
                    aborted = reason
                    break
                if time.perf_counter() > deadline + cfg.request_timeout_s:
                    aborted = f"burst exceeded its wall-time bound ({cfg.max_wall_s:g}s)"
                    break
        finally:
            feed.final = True
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
            if feed.task is not None:  # a thread cannot be cancelled: let it answer, ignore the answer
                await asyncio.gather(feed.task, return_exceptions=True)
        if work.done() and not work.cancelled() and (exc := work.exception()) is not None:
            raise exc
    if feed.error is not None and not aborted:
        raise feed.error
    records = feed.records[: feed.next]
    for rec in records:
        if rec.status == "pending" and rec.send_s == rec.send_s:
            rec.status, rec.error = "cancelled", aborted or "burst stopped"
    return BurstResult(
        records,
        t0_wall,
        t0,
        time.perf_counter() - t0,
        time.process_time() - cpu0,
        aborted,
        wall_bound=feed.wall_bound,
        stalled_s=feed.stalled_s,
    )


async def _closed_loop(client: httpx.AsyncClient, cfg: BurstConfig, feed: _Feed, t0: float) -> None:
    clients = min(cfg.concurrency, feed.size)

    async def user(c: int) -> None:
        while (i := await feed.take()) is not None:  # each client takes the next unsent request
            feed.records[i].client = c
            await _one(client, cfg, feed.body(i), feed.records[i], t0)
            if cfg.think_s is not None and (pause := cfg.think_s(i)) > 0:
                await asyncio.sleep(pause)

    await asyncio.gather(*(user(c) for c in range(clients)))


async def _open_loop(client: httpx.AsyncClient, cfg: BurstConfig, feed: _Feed, t0: float) -> None:
    assert feed.arrivals is not None
    gate = asyncio.Semaphore(cfg.concurrency)
    tasks: list[asyncio.Task[None]] = []

    async def send(i: int) -> None:
        async with gate:
            await _one(client, cfg, feed.body(i), feed.records[i], t0)

    try:
        while (i := await feed.take()) is not None:
            delay = t0 + feed.arrivals[i] - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() > feed.deadline:  # due after the wall-time bound: not sent
                feed.next, feed.final, feed.wall_bound = i, True, True
                break
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_burst(
    cfg: BurstConfig,
    bodies: Sequence[bytes],
    watchdog: Callable[[], str | None] | None = None,
    *,
    grow: Grow | None = None,
    lookahead: int = 0,
) -> BurstResult:
    """Blocking wrapper around ``run_burst_async`` (its own event loop)."""
    return asyncio.run(run_burst_async(cfg, bodies, watchdog, grow=grow, lookahead=lookahead))
