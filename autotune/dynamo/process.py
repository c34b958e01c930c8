"""Child processes that are always stopped: by PID, on success, exceptions, Ctrl-C and our own death.

Each child gets its own session (process group = its PID), its output goes to a log file, and
Linux's parent-death signal makes it SIGTERM itself if autotune dies without cleaning up (e.g.
SIGKILL). ``ProcessGroup.stop`` sends SIGTERM to each child's group, waits, then SIGKILLs what
is left; an ``atexit`` hook runs it for groups still open at interpreter exit.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_OPEN_GROUPS: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()


def _child_setup() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the child's log, for error messages."""
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 15, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


class ProcessGroup:
    """The processes of one deployment; ``stop`` is idempotent and never raises."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        _OPEN_GROUPS.add(self)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(  # noqa: S603 - argv built by us, no shell
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_child_setup,
            )
        child = Child(name, popen, log_path, list(argv))
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that have exited."""
        return [c for c in self.children if not c.alive()]

    def stop_child(self, child: Child, grace_s: float = 5.0) -> None:
        _terminate([child], grace_s)
        if child in self.children:
            self.children.remove(child)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every child's process group, wait up to ``grace_s``, SIGKILL the rest."""
        children, self.children = self.children, []
        _terminate(children, grace_s)
        _OPEN_GROUPS.discard(self)

    def pids(self) -> list[int]:
        return [c.pid for c in self.children]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: pgid == pid
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _terminate(children: Sequence[Child], grace_s: float) -> None:
    for c in children:
        if c.alive():
            _signal_group(c.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for c in children:
        left = max(0.0, deadline - time.monotonic())
        try:
            c.popen.wait(timeout=left)
        except subprocess.TimeoutExpired:
            pass
    for c in children:
        # Also the group: a child that exited may have left grandchildren in its group.
        _signal_group(c.pid, signal.SIGKILL)
        try:
            c.popen.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass


def group_alive(pid: int) -> bool:
    """Whether any process of the group led by ``pid`` still exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@atexit.register
def _stop_all() -> None:
    for group in list(_OPEN_GROUPS):
        group.stop(grace_s=2.0)
