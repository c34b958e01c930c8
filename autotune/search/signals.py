"""Signals during a study: SIGTERM is Ctrl-C, and neither may land while storage is mid-update.

Blocking happens at the thread level (``pthread_sigmask``); threads and processes started inside a
deferred region inherit the mask, which is how the pool's helper threads never take a signal.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A CronJob's SIGTERM behaves like Ctrl-C: in-flight trials are failed with a reason, then exit."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


_HELD = (signal.SIGINT, signal.SIGTERM)
_depth = 0
_caught: list[int] = []


def _hold(signum: int, frame: object) -> None:
    _caught.append(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while storage is mid-update, so no trial is created or told half-way.

    Two layers, because the mask alone is not enough: a signal the kernel hands to another thread (or
    that arrived just before the mask) still runs its Python handler in the main thread at the next
    bytecode. So the region also swaps in a handler that only records the signal; on leaving the
    outermost region the old handlers come back and a recorded signal is raised again, to them.
    """
    global _depth
    try:
        old = {s: signal.signal(s, _hold) for s in _HELD} if _depth == 0 else {}
    except ValueError:  # not the main thread: Python runs handlers only there, nothing to hold
        yield
        return
    _depth += 1
    masked = _depth == 1 and _mask(signal.SIG_BLOCK)  # threads and processes started inside inherit it
    try:
        yield
    finally:
        if masked:
            _mask(signal.SIG_UNBLOCK)
        _depth -= 1
        if _depth == 0:
            for s, handler in old.items():
                signal.signal(s, handler)
            caught, _caught[:] = list(_caught), []
            if caught:
                signal.raise_signal(caught[0])  # to the restored handler: Ctrl-C / SIGTERM as if it came now


def _mask(how: int) -> bool:
    try:
        signal.pthread_sigmask(how, set(_HELD))
    except (AttributeError, ValueError):  # not POSIX
        return False
    return True


def worker_init() -> None:
    """Pool workers leave Ctrl-C and SIGTERM to the parent, which fails their trials and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # forked while the parent held it
