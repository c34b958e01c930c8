"""A private network namespace for one ``dynamo-local`` stack (Linux, root): only ``lo``, nothing else.

Why: Dynamo 1.6.1's ZMQ publishers bind 0.0.0.0 on OS-assigned ports whatever its host settings say.
In a namespace of its own with only the loopback interface, 0.0.0.0 is 127.0.0.1 of that namespace
and nothing outside it can connect.

How: a network namespace belongs to a *thread* on Linux (``unshare``/``setns`` change the calling
thread only; threads and processes it starts afterwards inherit it; sockets keep the namespace they
were created in). So a short-lived helper thread ``unshare(CLONE_NEWNET)``\\ s, brings ``lo`` up
(``SIOCSIFFLAGS``, no ``ip`` needed) and opens its namespace file; that descriptor keeps the namespace
alive. ``NetNamespace.inside()`` moves the calling thread in (``setns``) and back afterwards, so
everything the stack does (its processes, readiness checks, scrapes, the load client) happens inside
while the rest of the process (other backends, a test session) stays in the host's namespace.

Where it cannot be done (not Linux, not root, ``unshare`` refused by a container's seccomp profile or
missing ``CAP_SYS_ADMIN``) the stack runs in the host's namespace as before; why is logged once per
process and ``NetNamespace.mode`` says ``host``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, flags (of the union), padding to 40 bytes

_lock = threading.Lock()
_refused: str | None = None  # why a private namespace cannot be had in this process (cached)
_logged: set[str] = set()


@dataclass
class NetNamespace:
    """A private namespace (``fd`` open on it) or the host's (``fd`` None, ``reason`` says why)."""

    fd: int | None
    reason: str = ""

    @property
    def mode(self) -> str:
        return "private" if self.fd is not None else "host"

    @contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block with the calling thread in this namespace (no-op for the host's)."""
        if self.fd is None:
            yield
            return
        home = os.open(_thread_ns_path(), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def close(self) -> None:
        """Drop our reference; the namespace goes when its last process has exited."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.reason = "closed"


def private_namespace() -> NetNamespace:
    """A fresh network namespace with ``lo`` up, or the host's with the reason (logged once)."""
    global _refused
    with _lock:
        reason = _refused or _precondition()
        if not reason:
            try:
                return NetNamespace(_create())
            except OSError as exc:
                reason = f"unshare(CLONE_NEWNET) refused: {exc.strerror or exc}"
                if exc.errno not in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.ENOSYS):
                    reason = f"private network namespace failed: {exc}"
            _refused = reason
        if reason not in _logged:
            _logged.add(reason)
            log.warning(
                "dynamo-local: stack runs in the host's network namespace (%s); Dynamo's ZMQ publishers "
                "listen on 0.0.0.0 while a trial runs",
                reason,
            )
        return NetNamespace(None, reason)


def _precondition() -> str:
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists(_thread_ns_path()):
        return "no /proc/self/task/*/ns/net"
    return ""


def _thread_ns_path() -> str:
    return f"/proc/self/task/{threading.get_native_id()}/ns/net"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags: int) -> None:
    if _libc().unshare(flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
        flags = struct.unpack(_IFREQ, req)[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _create() -> int:
    """Unshare in a helper thread (the caller's thread never moves); return a descriptor on the new namespace."""
    out: list[int | BaseException] = []

    def work() -> None:
        try:
            _unshare(CLONE_NEWNET)
            _lo_up()
            out.append(os.open(_thread_ns_path(), os.O_RDONLY | os.O_CLOEXEC))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append(exc)

    t = threading.Thread(target=work, name="autotune-netns", daemon=True)
    t.start()
    t.join()
    result = out[0] if out else OSError(errno.EINVAL, "helper thread ended without a result")
    if isinstance(result, BaseException):
        raise result
    return result
