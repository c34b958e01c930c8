"""The graphs this process has on the cluster, so a signal or the interpreter's exit deletes them.

While any graph is live, SIGTERM raises ``Interrupted`` so ``with`` blocks unwind (and a study's loop
closes its backend, which deletes a graph kept between trials); ``atexit`` catches the rest.
"""

from __future__ import annotations

import atexit
import signal
import threading
from typing import Any, Protocol

from autotune.errors import Interrupted


class LiveGraph(Protocol):
    name: str
    closing: bool

    def close(self) -> None: ...


_LIVE: dict[str, LiveGraph] = {}
_LIVE_LOCK = threading.Lock()
_previous_handler: list[Any] = []


def _sigterm(signum: int, frame: object) -> None:
    if any(d.closing for d in list(_LIVE.values())):
        return  # already tearing down: let the deletes finish
    raise Interrupted(f"received signal {signum}; trial graphs are being deleted")


def track(dep: LiveGraph, live: bool) -> None:
    """Register a live graph (or forget a deleted one); while any is live, SIGTERM raises ``Interrupted``.

    The handler is installed only where nobody else handles SIGTERM (the CLI may have its own)
    and only from the main thread; the previous handler comes back when the last graph is gone.
    """
    with _LIVE_LOCK:
        if live:
            _LIVE[dep.name] = dep
        else:
            _LIVE.pop(dep.name, None)
        if threading.current_thread() is not threading.main_thread():
            return
        if _LIVE and not _previous_handler and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            _previous_handler.append(signal.signal(signal.SIGTERM, _sigterm))
        elif not _LIVE and _previous_handler:
            signal.signal(signal.SIGTERM, _previous_handler.pop())


@atexit.register
def _close_all() -> None:
    for dep in list(_LIVE.values()):
        try:
            dep.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit; `autotune cleanup` remains
            pass
