"""A loopback TCP proxy whose target can change while it serves: how a local switch moves traffic.

Clients (the load generator, a local gateway) talk to the proxy's fixed port. Each new connection is
sent to the target of the moment; a connection keeps its frontend until it closes, so a request in
flight finishes where it started. Moving the target therefore loses nothing; the old frontend is
drained (``active_on`` reaches 0) before it is stopped. ``failed`` counts connections the proxy could
not forward (target refused): the requests a switch would have affected.

Plain TCP, no HTTP parsing: streaming responses pass through unchanged. A client that keeps a
connection alive across a switch stays on the old frontend until it reconnects; the load burst opens
a fresh connection per request (``autotune.loadgen.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

from autotune.errors import BackendError

HOST = "127.0.0.1"
Target = tuple[str, int]


class SwitchProxy:
    def __init__(self, target: Target, port: int = 0) -> None:
        self.target = target
        self.port = port
        self.failed = 0
        self.forwarded = 0
        self._active: Counter[Target] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="control-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> SwitchProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, HOST, self.port), self._loop)
        try:
            self._server = fut.result(timeout=10)
        except OSError as exc:
            self.stop()
            raise BackendError(f"control proxy: cannot listen on {HOST}:{self.port}: {exc.strerror}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def set_target(self, target: Target) -> None:
        with self._lock:
            self.target = target

    def active_on(self, target: Target) -> int:
        with self._lock:
            return self._active[target]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with self._lock:
            target = self.target
            self._active[target] += 1
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*target)
            except OSError:
                with self._lock:
                    self.failed += 1
                return
            with self._lock:
                self.forwarded += 1
            upstream = asyncio.ensure_future(self._pipe(client_r, server_w, half_close=True))
            try:
                await self._pipe(server_r, client_w, half_close=False)
            finally:
                upstream.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await upstream
                server_w.close()
        finally:
            with self._lock:
                self._active[target] -= 1
            client_w.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, half_close: bool) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if half_close and dst.can_write_eof():
                dst.write_eof()  # the client finished its request; the response keeps flowing
        except (OSError, asyncio.IncompleteReadError):
            pass

    def drain(self, timeout_s: float) -> int:
        """Stop accepting, let the connections in flight finish (``timeout_s`` at most); returns those left."""
        if self._server is not None:
            server = self._server
            self._loop.call_soon_threadsafe(server.close)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                left = sum(self._active.values())
            if left == 0:
                return 0
            time.sleep(0.05)
        return left

    def stop(self) -> None:
        """Close the listener and every connection; idempotent."""
        if self._server is not None:
            server, self._server = self._server, None

            async def close() -> None:
                server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
