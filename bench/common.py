"""What the bench scripts share: the PostgreSQL server they use, their own databases, and the
two raw-ASGI helpers of the bare references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def pg_url(db: str, driver: str = "postgresql") -> str:
    """The URL of database `db` on the bench server, for asyncpg or (driver) SQLAlchemy."""
    return PG.replace("postgresql://", f"{driver}://", 1).rstrip("/") + "/" + db


async def recreate_database(db: str, *, drop_only: bool = False) -> None:
    """Drop `db` (and create it again unless `drop_only`); never the shared `test` database."""
    import asyncpg

    if db == "test":
        raise SystemExit("refusing to touch the database `test`")
    conn = await asyncpg.connect(pg_url("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()


def migrate(db: str) -> None:
    env = dict(os.environ, LC_DATABASE_URL=pg_url(db, "postgresql+asyncpg"))
    subprocess.run([sys.executable, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


# -- raw ASGI, for the bare references ----------------------------------------------------------
async def read_body(receive) -> dict:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    return json.loads(raw) if raw else {}


async def answer(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
