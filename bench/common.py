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
async def lifespan(receive, send, dsn: str, schema: str, use_pool) -> None:
    """Answer the ASGI lifespan protocol: open the pool and create the schema at startup (the
    pool is handed to `use_pool`), close the pool at shutdown."""
    import asyncpg

    pool = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            pool = await asyncpg.create_pool(dsn, min_size=5, max_size=20)
            async with pool.acquire() as conn:
                await conn.execute(schema)
            use_pool(pool)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if pool is not None:
                await pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


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
