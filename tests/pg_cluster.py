"""A throw-away PostgreSQL cluster for the tests: initdb in a temp dir, loopback only, password auth, stopped after.

The binaries are found on PATH or under /usr/lib/postgresql/*/bin (Debian's ``postgresql``;
scripts/setup_postgres.sh installs it). initdb refuses to run as root, so as root the cluster
belongs to ``nobody`` and its commands run through ``setpriv``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int
    password: str
    user: str = "autotune"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def _as_owner(self, *cmd: str) -> list[str]:
        if os.geteuid() != 0:
            return list(cmd)
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *cmd]

    def _run(self, *cmd: str) -> None:
        subprocess.run(self._as_owner(*cmd), check=True, capture_output=True, text=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            os.chown(pwfile, nobody.pw_uid, nobody.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts, "-w", "start"
        )

    def create_db(self, name: str) -> str:
        """A fresh database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
            timeout=120,
            cwd=self.root,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PgCluster:
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL not found (PATH, /usr/lib/postgresql/*/bin); run scripts/setup_postgres.sh")
    root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
    cluster = PgCluster(bindir, root, _free_port(), secrets.token_urlsafe(16))
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def cluster_or_skip() -> Iterator[PgCluster]:
    """A fixture's body: a started cluster, stopped after; skips without PostgreSQL (fails in CI)."""
    import pytest

    if pg_bin() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("PostgreSQL not installed; scripts/setup_postgres.sh must run before the tests", pytrace=False)
        pytest.skip("PostgreSQL not installed (scripts/setup_postgres.sh)")
    cluster = start_cluster()
    yield cluster
    cluster.stop()
