"""A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, `pg_ctl start` on a free
port of 127.0.0.1, a fresh database per test, everything removed at the end.

As root the cluster runs as the `postgres` system user (PostgreSQL refuses root). The server
binaries are found on PATH or in /usr/lib/postgresql/<version>/bin (scripts/setup.sh installs
them with apt-get when missing).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .aio import run_coro
from .servers import free_port


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup.sh test "
                           "(it apt-installs postgresql) or `apt-get install -y postgresql`")
    return versions[-1].parent


@dataclass(frozen=True)
class PostgresCluster:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, prefix: str = "alloy") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"

        async def create() -> None:
            conn = await asyncpg.connect(host=self.host, port=self.port, user=self.user,
                                         database="postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        run_coro(create)
        return self.url(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresCluster]:
    """Run a throwaway cluster (trust auth, fsync off) until the block ends."""
    bin_dir = _bin_dir()
    tmp = Path(tempfile.mkdtemp(prefix="alloy-pg-"))
    data = tmp / "data"
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(tmp, pg.pw_uid, pg.pw_gid)
    port = free_port()
    log = tmp / "server.log"
    try:
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                                     "-U", "postgres", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        options = (f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        started = subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                          str(log), "-w", "-t", "60", "start"]),
            capture_output=True, text=True, timeout=90)
        if started.returncode != 0:
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{detail[-2000:]}")
        try:
            yield PostgresCluster(host="127.0.0.1", port=port, user="postgres")
        finally:
            subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m",
                                         "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
