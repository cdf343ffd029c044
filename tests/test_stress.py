"""The short stress run (bench/stress.py, `make stress-short`) on PostgreSQL: two service
processes with their sweepers and webhook relays, concurrent random clients, the test clock
moving, one process SIGKILLed and restarted mid-load; the ledger, hold, quota, cooperation and
webhook invariants must hold and no answer may be a 5xx (exit code 0). Skipped on SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, postgres_only

ROOT = Path(__file__).resolve().parents[1]
SHORT = [
    "--seconds",
    "20",
    "--clients",
    "20",
    "--merchants",
    "6",
    "--creators",
    "20",
    "--agencies",
    "2",
    "--clock-days",
    "10",
    "--kill-at",
    "0.25",
    "--restart-after",
    "3",
    "--drain-timeout",
    "90",
]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@postgres_only
def test_short_stress_run_with_a_crash_keeps_every_invariant() -> None:
    url = make_url(TEST_DATABASE_URL)
    auth = f"{url.username or ''}{':' + url.password if url.password else ''}@" if url.username else ""
    server = f"postgresql://{auth}{url.host or '127.0.0.1'}:{url.port or 5432}"
    a, b, receiver = _free_ports(3)
    env = {**os.environ, "STRESS_PG": server}
    proc = subprocess.run(
        [
            sys.executable,
            "bench/stress.py",
            *SHORT,
            "--db",
            "lc_stress_ci",
            "--ports",
            str(a),
            str(b),
            "--receiver-port",
            str(receiver),
            "--seed",
            "20261123",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # its services die with it
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    assert "all invariants hold" in proc.stdout
    assert "SIGKILL service-a" in proc.stdout and "restarted service-a" in proc.stdout
