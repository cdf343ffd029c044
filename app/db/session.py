"""Engine and session factory.

SQLite: pysqlite's own transaction handling is switched off and every transaction starts with
`BEGIN IMMEDIATE`, so writers are serialised by the database (SQLAlchemy's documented
workaround), and foreign keys are enforced. PostgreSQL: asyncpg, READ COMMITTED, row locks;
sessions are `LeanSession`s (below)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from sqlalchemy import ARRAY, MetaData, event, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn

log = logging.getLogger("app.db")


# SQLSTATEs of a database that is going away or cannot take the connection: connection
# exceptions (class 08), admin/crash shutdown and "cannot connect now" (57P01-57P03), too many
# connections (53300).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
_UNAVAILABLE_TEXT = (
    "connection is closed",
    "connection was closed",
    "unable to open database file",
    "underlying connection is closed",
)


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` (or what it was raised from) means the database cannot be reached now:
    refused or dropped connections, a terminated backend, a server shutting down, a SQLite file
    that cannot be opened, a pool with no connection to give. Such a request answers 503."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, exc.DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (OSError, exc.TimeoutError)):  # ConnectionRefusedError, socket.gaierror, timeouts
            return True
        state = str(getattr(current, "sqlstate", None) or getattr(current, "pgcode", None) or "")
        if state.startswith(_UNAVAILABLE_STATES):
            return True
        name = type(current).__name__
        if name in ("InterfaceError", "OperationalError", "ConnectionDoesNotExistError") or name.endswith("ConnectionError"):
            text = str(current).lower()
            if name == "ConnectionDoesNotExistError" or any(t in text for t in _UNAVAILABLE_TEXT) or "connect" in text:
                return True
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def dialect_of(session: AsyncSession) -> Dialect:
    """The dialect of the engine (or connection) `session` is bound to. Every session here is
    made bound (`async_sessionmaker(engine)`, `LeanSession(engine)`); AsyncSession types its
    bind as optional."""
    bind = session.bind
    if bind is None:
        raise RuntimeError("the session is not bound to an engine or a connection")
    return bind.dialect


def make_engine(url: str, *, pool_size: int = 40, ping_idle_seconds: float | None = None, **kwargs) -> AsyncEngine:
    """The engine of `url`. On PostgreSQL a pooled connection idle for `ping_idle_seconds`
    (default `LC_DB_PING_IDLE_SECONDS`) is pinged at checkout (`ping_when_idle`)."""
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
    engine = create_async_engine(url, **kwargs)
    if ping_idle_seconds is None:
        from app.core.config import get_settings

        ping_idle_seconds = get_settings().db_ping_idle_seconds
    ping_when_idle(engine, ping_idle_seconds)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pool pre-ping, but only for a connection that has sat in the pool for `idle_seconds`:
    a restarted or failed-over database (or a proxy that dropped an idle connection) then
    costs no request, while the hot path, whose connections come back within milliseconds,
    sends no extra statement. A ping that fails raises `DisconnectionError`, on which the pool
    throws the connection away and checks out (or opens) another. A connection broken while in
    use invalidates the whole pool (`LeanSession.forget_if_broken`, SQLAlchemy's own path), so
    after a database restart only the requests in flight fail. A connection the server closed
    while it was pooled is known to asyncpg already and is replaced at checkout, pinged or not."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["lc_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # Free of cost: asyncpg has already seen a connection the server closed while it sat in
        # the pool (a restart or `pg_terminate_backend` sends a FATAL message and a FIN, which
        # the event loop read meanwhile); replace it instead of failing the request.
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and raw.is_closed():
            raise exc.DisconnectionError("the server closed this pooled connection")
        since = record.info.pop("lc_idle_since", None)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the connection is not usable
            raise exc.DisconnectionError(f"idle connection failed its ping: {type(error).__name__}") from error


async def warm_pool(engine: AsyncEngine, connections: int, metadata: MetaData | None = None) -> None:
    """Open `connections` pooled connections now, concurrently, and keep them in the pool: the
    first requests after start-up then find them ready (on PostgreSQL; at most the pool's size).
    With `metadata`, each connection also learns the array types of its columns now: asyncpg
    introspects a non-text array type on a connection's first statement that uses it (a
    recursive catalog query, three round trips), which would otherwise fall on those requests."""
    if engine.dialect.name != "postgresql" or connections <= 0:
        return
    warm = _array_types_statement(metadata, engine.dialect) if metadata is not None else None

    async def open_one() -> AsyncConnection:
        connection = await engine.connect()
        if warm:
            adapted: Any = (await connection.get_raw_connection()).dbapi_connection  # SQLAlchemy's asyncpg adapter
            await adapted._connection.prepare(warm)
        return connection

    pool = engine.pool
    size = pool.size() if isinstance(pool, QueuePool) else connections  # a pool without a size keeps none
    opened = await asyncio.gather(*(open_one() for _ in range(min(connections, size))), return_exceptions=True)
    failed = [error for error in opened if isinstance(error, BaseException)]
    for connection in opened:
        if not isinstance(connection, BaseException):
            await connection.close()
    if failed:  # the service starts anyway; requests open connections when the database is back
        log.warning("could not open %d of %d pooled connections at start-up: %s", len(failed), len(opened), failed[0])


def _array_types_statement(metadata: MetaData, dialect: Any) -> str:
    """`SELECT $1::BIGINT[], $2::BOOLEAN[], …`: one parameter per array type of the columns."""
    names = sorted(
        {
            re.sub(r"\(.*?\)", "", ARRAY(column.type).compile(dialect=dialect))
            for table in metadata.tables.values()
            for column in table.columns
        }
    )
    return "SELECT " + ", ".join(f"${i}::{name}" for i, name in enumerate(names, 1))


def make_sessionmaker(bind) -> async_sessionmaker[AsyncSession]:
    lean = isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql"
    return async_sessionmaker(bind, class_=LeanSession if lean else AsyncSession, expire_on_commit=False, autoflush=True)


# What a fast-lane statement does, for a deferred transaction (LeanSession.defer_transaction):
READ = "read"  # a plain SELECT: no lock, no data-modifying CTE
ATOMIC = "atomic"  # a whole write in one statement (marked by whoever builds it: app/db/bulk.py)
OTHER = "other"  # anything else: it needs the transaction


class WriteAfterCommit(RuntimeError):
    """A request that declared one write (`@one_write`) tried to write again after that write
    had committed on its own: the route's declaration is wrong (a programming error, a 500)."""


def raise_as_sqlalchemy(
    error: Exception, adapted: Any, dialect: Any, statement: str | None = None, params: Any = None
) -> NoReturn:
    """Raise asyncpg's `error` as SQLAlchemy would (a DBAPIError subclass: IntegrityError …)."""
    try:
        adapted._handle_exception(error)
    except Exception as dbapi_error:
        raise exc.DBAPIError.instance(statement, params, dbapi_error, dialect.loaded_dbapi.Error) from error
    raise error


class LeanSession(AsyncSession):
    """An AsyncSession that is only a pooled connection and its transaction until something asks
    for the ORM.

    Repository statements on the fast lane (`app/db/repositories/_run.py`) need no ORM session:
    they go through `driver()`, the asyncpg connection of a pool checkout, in a transaction begun
    on it. Building SQLAlchemy's Session, SessionTransaction and Connection around that for every
    request cost more CPU than the asyncpg round trips of a task-order accept. So nothing of
    AsyncSession is built at construction; the first use of anything AsyncSession provides
    (`execute`, `add`, `get`, `begin_nested`, `new` …) builds it — `__getattr__` runs for the
    instance attributes `AsyncSession.__init__` would have set — bound to the same pooled
    connection, inside the transaction already begun, so both kinds of work commit or roll back
    together. `commit`, `rollback` and `close` end the transaction themselves while the session
    is still lean. Correct by default: code that uses the session like any AsyncSession gets one."""

    _orm = False  # whether AsyncSession's own state has been built
    _deferred = False  # see defer_transaction
    _wrote = False  # a deferred transaction's one write has committed

    def __init__(self, bind: AsyncEngine, **kw: Any) -> None:  # noqa: D107 - AsyncSession.__init__ deferred
        self._engine = bind
        self._kw = kw
        self._info: dict[Any, Any] = dict(kw.pop("info", None) or {})
        self._fairy: Any = None  # the pool checkout
        self._adapted: Any = None  # SQLAlchemy's adapter of its asyncpg connection
        self._sync_connection: Connection | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_engine" not in self.__dict__ or self.__dict__.get("_orm"):
            raise AttributeError(name)
        self._build_orm()
        return getattr(self, name)

    def _build_orm(self) -> None:
        if self._wrote:
            raise WriteAfterCommit("the ORM was asked for after this request's one write committed")
        self._orm = True
        bind: AsyncEngine | AsyncConnection = self._engine
        if self._fairy is not None:  # join the transaction already begun on this connection
            self._sync_connection = Connection(self._engine.sync_engine, connection=self._fairy)
            bind = AsyncConnection(self._engine, self._sync_connection)
        AsyncSession.__init__(self, bind=bind, **self._kw)
        self.sync_session.info.update(self._info)
        self._info = self.sync_session.info

    @property
    def lean(self) -> bool:
        """True while no ORM session has been built."""
        return not self._orm

    @property
    def info(self) -> dict[Any, Any]:
        return self._info

    @property
    def bind(self) -> Any:
        return super().bind if self._orm else self._engine

    @bind.setter
    def bind(self, bind: AsyncEngine | AsyncConnection | None) -> None:
        if not self._orm:
            self._build_orm()
        # mypy types a property read off its class as the property's value, not as the property
        AsyncSession.bind.fset(self, bind)  # type: ignore[attr-defined]

    def defer_transaction(self) -> None:
        """No BEGIN until one is needed, for a request that writes once: plain reads run on their
        own, and a statement that carries a whole write by itself (`ATOMIC`: a gated write with
        its history, event and the rows behind it) commits on its own when no transaction has
        begun — two round trips fewer (BEGIN, COMMIT), and the rows it locks are released when
        it ends, not one event-loop turn later. PostgreSQL makes one statement atomic, and a
        READ COMMITTED transaction gives each statement its own snapshot anyway, so the request
        sees and does the same. Anything else (a locking read, any other write, the ORM) begins
        the transaction as usual, and once one has begun everything runs in it. A write after
        the committed one raises `WriteAfterCommit`. Set by `TxRoute` for `@one_write` routes
        called without an Idempotency-Key (the stored answer must commit with the effect)."""
        self._deferred = True

    def wrote_nothing(self) -> None:
        """The ATOMIC statement just run outside a transaction changed no row (its condition did
        not hold): nothing committed, so the request's one write is still to come. Only the
        repository that knows its statement changed nothing calls it (`_run.wrote_nothing`)."""
        adapted = self._adapted
        if self._wrote and adapted is not None and adapted._transaction is None:
            self._wrote = False

    async def driver(self, kind: str = OTHER) -> Any:
        """SQLAlchemy's adapter of the asyncpg connection, in a transaction: a connection is
        checked out of the pool and BEGIN sent on first use (a deferred transaction: see
        `defer_transaction`). Only while `lean`."""
        adapted = self._adapted
        if adapted is None:
            dialect = self._engine.dialect
            try:
                self._fairy = await greenlet_spawn(self._engine.sync_engine.raw_connection)
            except dialect.loaded_dbapi.Error as error:
                raise exc.DBAPIError.instance(
                    None, None, error, dialect.loaded_dbapi.Error, connection_invalidated=True
                ) from error
            adapted = self._adapted = self._fairy.dbapi_connection
        if adapted._transaction is None:
            if self._deferred and kind == READ:
                return adapted
            if self._wrote:
                raise WriteAfterCommit("this request's one write has committed; it may not write again")
            if self._deferred and kind == ATOMIC:
                self._wrote = True
                return adapted
            await self._guard(adapted._start_transaction)
        return adapted

    async def _guard(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a driver call; a broken connection is invalidated (never goes back to the pool)."""
        try:
            return await call()
        except Exception as error:
            self.forget_if_broken()
            if isinstance(error, exc.DBAPIError):
                raise
            raise_as_sqlalchemy(error, self._adapted, self._engine.dialect)

    def forget_if_broken(self) -> None:
        """A connection found closed is thrown away, and so is every connection pooled before it
        (as SQLAlchemy does on a disconnect): they most likely died with it (a database
        restart, a failover, `pg_terminate_backend`), and the next requests would find them dead."""
        if self._fairy is not None and self._adapted._connection.is_closed():
            self._engine.sync_engine.pool._invalidate(self._fairy)

    async def _end(self, commit: bool) -> None:
        adapted = self._adapted
        if adapted is not None and adapted._transaction is not None:
            transaction = adapted._transaction
            await self._guard(lambda: adapted._call_and_discard(transaction.commit if commit else transaction.rollback))

    async def commit(self) -> None:
        if self._orm:
            await AsyncSession.commit(self)
        else:
            await self._end(commit=True)

    async def rollback(self) -> None:
        if self._orm:
            await AsyncSession.rollback(self)
        else:
            await self._end(commit=False)

    async def close(self) -> None:
        """End what is open and give the connection back to the pool."""
        try:
            if self._orm:
                await AsyncSession.close(self)
            elif self._adapted is not None:
                try:
                    await self._end(commit=False)
                except exc.DBAPIError:  # a connection that cannot roll back is not reused
                    self._fairy.invalidate()
        finally:
            connection, fairy = self._sync_connection, self._fairy
            self._sync_connection = self._fairy = self._adapted = None
            self._deferred = self._wrote = False
            if self._orm:  # lean again: a later use checks out a connection afresh
                for name in _ASYNC_SESSION_STATE:
                    self.__dict__.pop(name, None)
                self._info = dict(self._info)
                self._orm = False
            if connection is not None:
                await greenlet_spawn(connection.close)
            elif fairy is not None:
                await greenlet_spawn(fairy.close)


# what AsyncSession.__init__ (and its memoized properties) set on the instance
_ASYNC_SESSION_STATE = ("sync_session", "_proxied", "_async_bind", "_async_binds", "_translate_binds")
