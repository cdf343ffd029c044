"""The one way a repository runs a statement.

On PostgreSQL a statement takes the fast lane: SQLAlchemy compiles it once (the asyncpg
dialect's SQL with `$n` placeholders, its parameter order and its type processors) and every
later call sends it straight through the request's asyncpg connection, inside the transaction
SQLAlchemy began on it. That skips SQLAlchemy's per-execution work (execution context,
parameter and result processing objects), which cost more CPU than the driver itself on the
hot paths. Only statements built once and marked with `prepared()` take it (a statement built
per call would be compiled per call); those with expanding `IN` lists, any other statement and
every statement on SQLite go through `AsyncSession.execute`. Errors are raised as SQLAlchemy's
DBAPIError subclasses either way."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import Executable, Select, exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import ClauseElement

from app.db.session import ATOMIC, OTHER, READ, LeanSession, dialect_of, raise_as_sqlalchemy

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


_REQUIRED = object()


class Plan:
    """A statement compiled once for asyncpg."""

    __slots__ = ("sql", "slots", "required", "processed", "fast", "kind")

    def __init__(self, statement: Executable, dialect: Any, *, atomic: bool = False) -> None:
        # a Core statement is a ClauseElement (Executable is only a mixin) and compiles to SQL
        compiled = statement.compile(dialect=dialect) if isinstance(statement, ClauseElement) else None
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql = compiled.string
        processors = compiled._bind_processors
        # one slot per `$n`: the parameter's key and the value it has when the call gives none (a
        # literal of the statement; _REQUIRED for a bindparam the call must give); then the keys
        # a call must give, and the slots whose values SQLAlchemy's type processes
        self.slots: list[tuple[str, Any]] = []
        self.processed: list[tuple[int, Any]] = []
        for index, name in enumerate(compiled.positiontup or ()):
            bind = compiled.binds[name]
            self.slots.append((bind.key, _REQUIRED if bind.required else bind.effective_value))
            if processors.get(name) is not None:
                self.processed.append((index, processors[name]))
        self.required = frozenset(key for key, fixed in self.slots if fixed is _REQUIRED)
        # expanding IN lists are rendered per call, and Python-side column defaults are
        # computed by SQLAlchemy's execution context: those statements take the normal path
        self.fast = not (
            compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.insert_prefetch
            or compiled.update_prefetch
            or any(compiled.binds[n].callable for n in compiled.positiontup or ())
        )
        # what a deferred transaction (LeanSession.defer_transaction) may run outside one
        writes = (
            compiled.isinsert
            or compiled.isupdate
            or compiled.isdelete
            or any(isinstance(cte.element, UpdateBase) for cte in compiled.ctes or ())
        )
        if atomic:
            self.kind = ATOMIC
        elif isinstance(statement, Select) and not writes and statement._for_update_arg is None:
            self.kind = READ
        else:
            self.kind = OTHER

    def args(self, params: Mapping[str, Any] | None) -> list[Any]:
        params = params or {}
        if not self.required <= params.keys():
            raise KeyError(f"missing parameters: {sorted(self.required - params.keys())}")
        get = params.get
        out = [get(key, fixed) for key, fixed in self.slots]
        for index, processor in self.processed:
            if out[index] is not None:
                out[index] = processor(out[index])
        return out


class FastRow:
    """A row of the fast lane: attribute, index and `_mapping` access like SQLAlchemy's Row."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, index: int) -> Any:
        return self._record[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._record.values())

    def __len__(self) -> int:
        return len(self._record)

    @property
    def _mapping(self) -> Any:
        return self._record


class FastResult:
    """The part of SQLAlchemy's Result the repositories use."""

    __slots__ = ("_records",)

    def __init__(self, records: list[Any]) -> None:
        self._records = records

    def __iter__(self) -> Iterator[FastRow]:
        return (FastRow(r) for r in self._records)

    def all(self) -> list[FastRow]:
        return [FastRow(r) for r in self._records]

    def first(self) -> FastRow | None:
        return FastRow(self._records[0]) if self._records else None

    def one(self) -> FastRow:
        if len(self._records) != 1:
            raise exc.NoResultFound("expected one row") if not self._records else exc.MultipleResultsFound("expected one row")
        return FastRow(self._records[0])

    def scalar(self) -> Any:
        return self._records[0][0] if self._records else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [r[0] for r in self._records]


_PLANS: dict[int, tuple[Executable, Plan | None]] = {}
_ATOMIC: set[int] = set()
_DRIVER_KEY = "lc_driver"
S = TypeVar("S", bound=Executable)


def prepared(statement: S, *, atomic: bool = False) -> S:
    """Mark a statement built once (at import, or once per shape and cached) for the fast lane.
    `atomic`: it carries a whole write by itself (a gated write with everything behind it), so a
    request that declared one write may run it outside a transaction block (`LeanSession`)."""
    _PLANS.setdefault(id(statement), (statement, None))
    if atomic:
        _ATOMIC.add(id(statement))
    return statement


def prepare_module(namespace: Mapping[str, Any]) -> None:
    """`prepared()` every statement a repository module built at import (module constants, and
    those inside its tuples and dicts of dialect variants)."""
    for value in list(namespace.values()):
        members = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)
        for member in members:
            if isinstance(member, Executable) and hasattr(member, "compile"):
                prepared(member)


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's current transaction. The session's innermost
    transaction takes the connection first (`session.connection()`), so SQLAlchemy has sent the
    BEGIN or the SAVEPOINT of a `begin_nested()` block before a statement goes round it, and
    rolls back to that savepoint when the block fails."""
    sync = session.sync_session
    key = (sync.get_transaction(), sync.get_nested_transaction())
    cached = session.info.get(_DRIVER_KEY)
    if cached is not None and key[0] is not None and cached[0] == key:
        adapted = cached[1]
    else:
        connection = await session.connection()
        adapted = (await connection.get_raw_connection()).dbapi_connection
        session.info[_DRIVER_KEY] = ((sync.get_transaction(), sync.get_nested_transaction()), adapted)
    if adapted._transaction is None:
        await adapted._start_transaction()
    return adapted


async def run(session: AsyncSession, statement: Executable, params: Params = None) -> Any:
    """Execute a Core statement in the request's transaction. Objects that a module still on the
    ORM has added or changed are flushed first (Core statements do not autoflush), so both
    kinds of code see one consistent transaction while the modules move to repositories."""
    lean = session if session.__class__ is LeanSession and session.lean else None
    if lean is None and (session.new or session.dirty or session.deleted):
        await session.flush()
    dialect = dialect_of(session)
    if dialect.name != "postgresql":
        return await session.execute(statement, params)
    known = _PLANS.get(id(statement))
    if known is None or known[0] is not statement:
        return await session.execute(statement, params)
    plan = known[1]
    if plan is None:
        plan = Plan(statement, dialect, atomic=id(statement) in _ATOMIC)
        _PLANS[id(statement)] = (statement, plan)
    if not plan.fast:
        return await session.execute(statement, params)
    adapted = await (lean.driver(plan.kind) if lean is not None else _driver(session))
    args: Any
    if params is None or isinstance(params, Mapping):
        many, args = False, plan.args(params)
    else:  # several parameter sets: one executemany
        many, args = True, [plan.args(p) for p in params]
    try:
        async with adapted._execute_mutex:
            if many:
                await adapted._connection.executemany(plan.sql, args)
                return FastResult([])
            return FastResult(await adapted._connection.fetch(plan.sql, *args))
    except Exception as error:  # the driver's error, raised as SQLAlchemy would raise it
        if lean is not None:
            lean.forget_if_broken()
        raise_as_sqlalchemy(error, adapted, dialect, plan.sql, args)


def wrote_nothing(session: AsyncSession) -> None:
    """The atomic statement just run changed no row (a conditional UPDATE whose condition did not
    hold), so a request that declared one write has not written yet and may still begin a
    transaction for a write of another kind (`LeanSession.wrote_nothing`)."""
    if isinstance(session, LeanSession):
        session.wrote_nothing()


def record_of(cls: type[T], row: Any) -> T:
    """A record of `cls` (a dataclass) from a result row whose keys include its fields."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in _fields(cls)})


_FIELDS: dict[type, tuple] = {}


def _fields(cls: type) -> tuple:
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = fields(cls)
    return known
