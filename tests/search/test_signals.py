"""Signals during storage updates: held inside ``signals_deferred``, delivered once on leaving it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from autotune.search.signals import signals_deferred


def _busy(seconds: float) -> None:
    """Run bytecode (where Python runs pending handlers) for a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(100))


def _kill_from_thread(sig: int) -> None:
    """A thread started outside the region does not inherit the mask: the kernel may hand it the signal."""
    ready, go = threading.Event(), threading.Event()

    def body() -> None:
        ready.set()
        go.wait(30)
        os.kill(os.getpid(), sig)

    t = threading.Thread(target=body, daemon=True)
    t.start()
    ready.wait(30)
    return t, go  # type: ignore[return-value]


def test_ctrl_c_from_another_thread_waits_for_the_region_then_interrupts() -> None:
    t, go = _kill_from_thread(signal.SIGINT)
    inside_done = False
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            go.set()
            t.join(30)
            _busy(0.2)
            inside_done = True
    assert inside_done


def test_nested_regions_deliver_once_after_the_outermost() -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with signals_deferred():
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                _busy(0.1)
            _busy(0.1)
            assert seen == []
        _busy(0.1)
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_region_without_signals_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with signals_deferred():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
