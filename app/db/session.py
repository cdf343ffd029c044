"""Engine and session factory.

SQLite: pysqlite's own transaction handling is switched off and every transaction starts with
`BEGIN IMMEDIATE`, so writers are serialised by the database (SQLAlchemy's documented
workaround), and foreign keys are enforced. PostgreSQL: asyncpg, READ COMMITTED, row locks."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 40, **kwargs) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Overflow connections are closed when they come back: under steady load that is a new
    # PostgreSQL backend (a fork, its catalog caches, every statement prepared again) per
    # request. The pool keeps as many connections as a replica serves at once.
    kwargs.setdefault("pool_size", pool_size)
    kwargs.setdefault("max_overflow", 8)
    kwargs.setdefault("pool_pre_ping", False)
    return create_async_engine(url, **kwargs)


def make_sessionmaker(bind) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=True)
