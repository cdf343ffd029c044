"""Alembic environment (async). Migrates the database `LC_DATABASE_URL` names, or the URL a
caller put in `config.attributes["url"]`; batch mode on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Iterator

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

import app.db.models  # noqa: F401 - registers every table
from app.core.config import get_settings
from app.db.base import Base
from app.db.session import make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("url") or get_settings().database_url


def _configure(connection: Connection | None = None, **kw) -> None:
    url = _url()
    context.configure(
        connection=connection,
        url=None if connection else url,
        target_metadata=target_metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        **kw,
    )


def run_migrations_offline() -> None:
    _configure(literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


# Several replicas migrate at start (docker-compose.scale.yml): on PostgreSQL each takes this
# transaction-level advisory lock first, so they run one after the other and the later ones find
# the schema at head. Without it two `CREATE TABLE alembic_version` raced (a unique violation in
# pg_type) and the losers exited.
_MIGRATION_LOCK = 0x4C43_4D49  # "LCMI"


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        context.run_migrations()


async def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        await connection.run_sync(_run_sync)
        return
    engine = make_engine(_url())
    with _sqlite_file_lock(_url()):
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    await engine.dispose()


@contextlib.contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """SQLite's DDL does not wait for another migrator: processes migrating one file take an
    exclusive lock on `<file>.migrate-lock` first (PostgreSQL uses the advisory lock above)."""
    path = make_url(url).database if url.startswith("sqlite") else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
