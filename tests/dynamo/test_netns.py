"""The private network namespace of a ``dynamo-local`` stack: unreachable from the host, or the host's with a reason.

The namespace test needs root and a kernel (or container) that allows ``unshare(CLONE_NEWNET)``; elsewhere it
skips, except under ``CI=true`` as root, where it must run.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from autotune.dynamo import netns

CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_refused", None)
    monkeypatch.setattr(netns, "_logged", set())


def _ns() -> str:
    return os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net")


def _host_addresses() -> set[str]:
    addrs = {"127.0.0.1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addrs.add(str(info[4][0]))
    except OSError:
        pass
    return addrs


def test_a_process_listening_on_0000_inside_is_unreachable_from_the_host(fresh: None) -> None:
    ns = netns.private_namespace()
    if ns.fd is None:
        if CI and os.geteuid() == 0:
            pytest.fail(f"CI as root must be able to make a private network namespace: {ns.reason}")
        pytest.skip(f"no private network namespace here: {ns.reason}")
    home = _ns()
    # the port is bound (not listening) in the host's namespace: a connection there is refused, never
    # answered by some unrelated listener, whatever the namespace does
    reserve = socket.socket()
    reserve.bind(("127.0.0.1", 0))
    port = reserve.getsockname()[1]
    child = None
    try:
        with ns.inside():
            assert _ns() != home
            child = subprocess.Popen(
                [sys.executable, "-c", LISTENER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            seen: list[str] = []

            def connect() -> None:  # a thread started inside (like the load client's) is inside too
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    seen.append(_ns())

            t = threading.Thread(target=connect)
            t.start()
            t.join()
            assert seen and seen[0] != home
        assert _ns() == home  # the caller's thread is back
        for addr in _host_addresses():
            with pytest.raises(OSError), socket.create_connection((addr, port), timeout=2):
                pass
    finally:
        reserve.close()
        if child is not None:
            child.kill()
            child.wait(timeout=10)
        ns.close()
    assert ns.mode == "host" and ns.fd is None


def test_not_root_keeps_the_host_namespace_and_says_why_once(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(netns, "_precondition", lambda: "not running as root")
    with caplog.at_level(logging.WARNING, logger="autotune.dynamo.netns"):
        first, second = netns.private_namespace(), netns.private_namespace()
    assert first.mode == second.mode == "host" and first.reason == "not running as root"
    assert len(caplog.records) == 1 and "not running as root" in caplog.text and "0.0.0.0" in caplog.text
    home = _ns() if sys.platform.startswith("linux") else ""
    with first.inside():  # a no-op
        assert (_ns() if home else "") == home


def test_a_refused_unshare_is_remembered_and_logged_once(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def refuse(flags: int) -> None:
        calls.append(flags)
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(netns, "_precondition", lambda: "")
    monkeypatch.setattr(netns, "_unshare", refuse)
    with caplog.at_level(logging.WARNING, logger="autotune.dynamo.netns"):
        a, b = netns.private_namespace(), netns.private_namespace()
    assert a.mode == b.mode == "host" and "unshare(CLONE_NEWNET) refused" in a.reason
    assert calls == [netns.CLONE_NEWNET]  # not retried for every trial
    assert len(caplog.records) == 1
