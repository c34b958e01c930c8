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


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while storage is mid-update, so no trial is created or told half-way."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError):  # not POSIX, or not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


def worker_init() -> None:
    """Pool workers leave Ctrl-C and SIGTERM to the parent, which fails their trials and stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # forked while the parent held it
