"""The results directory as one unit: checked before use, locked while in use, replaced as a whole.

* ``check_results_dir``: a ``--results`` that is a file, sits under a file, is ``/`` or cannot be
  written is refused with one line before anything starts.
* ``results_lock``: one process at a time per directory (a CronJob's run and a manual ``--resume``
  would otherwise fail each other's trials); a second one is refused at once, exit 2.
* ``staged``: the output files are written into a fresh sibling directory holding hard links of
  everything else (the study journal, the lock), which then takes the directory's place with one
  atomic exchange (``renameat2(RENAME_EXCHANGE)``). A kill at any moment leaves either the old
  set of files or the new one, never a mix; leftovers of a killed writer are removed on the next
  start.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from autotune.errors import InputError

LOCK_NAME = ".autotune.lock"
_STAGING, _OLD = ".staging-", ".old-"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def check_results_dir(path: Path, flag: str = "--results") -> None:
    """Refuse a results path that cannot be a writable directory (before any work is done)."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise InputError(f"{flag}: {path} is the filesystem root; choose a directory of its own")
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag}: {path} exists and is not a directory")
    probe = resolved
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{flag}: {path} lies under {probe}, which is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: {probe} is not writable")


def _siblings(path: Path, marker: str) -> list[Path]:
    parent = path.resolve().parent
    return sorted(parent.glob(f".{path.name}{marker}*")) if parent.is_dir() else []


def clean_leftovers(path: Path) -> list[Path]:
    """Remove what a killed writer left: staging and swapped-out copies, half-written temp files."""
    removed = []
    for p in _siblings(path, _STAGING) + _siblings(path, _OLD):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if path.is_dir():
        for p in list(path.glob(".*.tmp-*")) + list(path.glob("plots/.*.tmp-*")):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def results_lock(path: Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the directory's lock for the duration (``flock``: released by the kernel if we die).

    ``wait_s``: how long to wait for another holder (a worker finishing a shared study waits out a
    concurrent ``report`` rather than leave the study without its recommendation).
    """
    olds = _siblings(path, _OLD)
    if olds and not path.exists():  # killed between the two renames of the fallback swap: undo
        os.rename(olds[-1], path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise InputError(
                    f"--results: {path} is in use by another autotune process; wait for it or choose another directory"
                ) from None
        clean_leftovers(path)
        yield
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextmanager
def staged(path: Path, outputs: set[str]) -> Iterator[Path]:
    """Yield a staging directory to write ``outputs`` (top-level names) into; on success it becomes ``path``.

    Every other entry of ``path`` (the study journal, the lock, a user's files) is carried over as
    hard links, so the swap moves no data and the journal stays the same file.
    """
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    stage = path.parent / f".{path.name}{_STAGING}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        stage.mkdir(mode=0o700)
    except OSError:  # the parent is not writable: fall back to per-file atomic writes in place
        yield path
        return
    try:
        for entry in path.iterdir():
            if entry.name in outputs:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, stage / entry.name, copy_function=os.link, symlinks=True)
            else:
                os.link(entry, stage / entry.name, follow_symlinks=False)
        yield stage
        _fsync_tree(stage)
        if not _exchange(stage, path):
            old = path.parent / f".{path.name}{_OLD}{os.getpid()}"
            os.rename(path, old)
            os.rename(stage, path)
            stage = old
        with suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in [*files, "."]:
            with suppress(OSError):
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
