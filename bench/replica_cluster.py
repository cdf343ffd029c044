"""A throw-away PostgreSQL primary and its streaming replica, for the tests and `make stress
--replicas` (scale.md "Reads on replicas").

The machine's own cluster allows no replication connections and is never reconfigured: this
makes a new primary with `initdb` in a temporary directory (a `host replication` line in its
own pg_hba.conf), a replica of it with `pg_basebackup -R`, each a postmaster on its own
loopback port, and removes both afterwards. Run as root, the servers run as the `postgres`
user (PostgreSQL refuses root). About two seconds on a quiet machine.

    with ReplicaCluster() as cluster:
        cluster.primary_url, cluster.replica_url     # postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def available() -> str | None:
    """None when a cluster can be made here, else why not."""
    if _bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to run the servers as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReplicaCluster:
    def __init__(self, database: str = "postgres", max_connections: int = 60) -> None:
        self.database = database
        self.max_connections = max_connections
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(available())
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="lc-replica-"))
        self.primary_port = free_port()
        self.replica_port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def _url(self, port: int, database: str | None = None) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database or self.database}"

    @property
    def primary_url(self) -> str:
        return self._url(self.primary_port)

    @property
    def replica_url(self) -> str:
        return self._url(self.replica_port)

    def start(self) -> ReplicaCluster:
        primary, replica = self.dir / "primary", self.dir / "replica"
        self._run("initdb", "-D", str(primary), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        with open(primary / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self._start(primary, self.primary_port, "-c wal_level=replica -c max_wal_senders=4")
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(replica),
            "-R",
            "-X",
            "stream",
        )
        self._start(replica, self.replica_port, "-c hot_standby=on")
        return self

    def _start(self, data: Path, port: int, options: str) -> None:
        settings = (
            f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections={self.max_connections} {options}"
        )
        self._run("pg_ctl", "-D", str(data), "-o", settings, "-l", str(self.dir / f"{data.name}.log"), "-w", "start")

    def stop_replica(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "replica"), "-m", "immediate", "stop", check=False)

    def start_replica(self) -> None:
        self._start(self.dir / "replica", self.replica_port, "-c hot_standby=on")

    def psql(self, port: int, sql: str, database: str | None = None) -> str:
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database or self.database, "-Atc", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout.strip()

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        target = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql(self.replica_port, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") == "t":
                return
            time.sleep(0.05)
        raise TimeoutError("the replica did not catch up")

    def close(self) -> None:
        for name in ("replica", "primary"):
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.dir / name), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ReplicaCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
