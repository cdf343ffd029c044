"""Declarative base, shared column types and id generation."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, String, Table, TypeDecorator, event, inspect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, Session, declared_attr, mapped_column
from sqlalchemy.sql.functions import FunctionElement

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # two characters for each 10 bits
_SHIFTS = range(120, -10, -10)


def new_id(prefix: str) -> str:
    """A prefixed, time-ordered opaque id (48-bit ms timestamp + 80 random bits, 26 base32 chars).

    Ids sort by creation time, so keyset pagination on the primary key lists newest or oldest
    first without another index."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def id_time(value: str) -> datetime:
    """When `new_id` drew `value` (its 48-bit millisecond timestamp), in UTC."""
    number = 0
    for char in value.rsplit("_", 1)[-1]:
        number = number * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp((number >> 80) / 1000, UTC)


class current_transaction(FunctionElement[int]):
    """The writing transaction's id as a bigint, for a column default: PostgreSQL's
    `pg_current_xact_id()`; 0 on SQLite, whose writers are serialised (see `Event.tx`)."""

    type = BigInteger()
    inherit_cache = True


@compiles(current_transaction, "postgresql")
def _current_transaction_pg(element: current_transaction, compiler: Any, **kw: Any) -> str:
    return "(pg_current_xact_id()::text::bigint)"


@compiles(current_transaction)
def _current_transaction_other(element: current_transaction, compiler: Any, **kw: Any) -> str:
    return "0"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


Money = BigInteger


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_ID_PREFIX = "lc_id_prefix"


def id_column(prefix: str) -> Mapped[str]:
    return mapped_column(String(40), primary_key=True, default=lambda: new_id(prefix), info={_ID_PREFIX: prefix})


def table_of(model: type[Base]) -> Table:
    """The Table `model` is mapped to, typed as one. SQLAlchemy types a mapped class's
    `__table__` as any FromClause (a class may be mapped to a join or a select), but every model
    here maps a Table, and insert/update/delete and the repositories' helpers want a Table."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a Table")
    return table


def id_for(model: type[Base]) -> str:
    """A new id of `model`'s kind, for rows written without an ORM object (`insert_together`)."""
    return new_id(model.__table__.c.id.info[_ID_PREFIX])


@event.listens_for(Base, "init", propagate=True)
def _assign_id(target: Base, args: tuple, kwargs: dict) -> None:
    """Give a new row its id when it is constructed, not at flush: related rows can point at it
    and several inserts go out in one flush, without a round trip in between."""
    if "id" not in kwargs:
        column = target.__table__.c.get("id")
        prefix = column.info.get(_ID_PREFIX) if column is not None else None
        if prefix:
            kwargs["id"] = new_id(prefix)


class Stateful:
    """Columns every state-machine row carries. `state` is the machine state; `version`
    increments on every change of the row (optimistic concurrency and the ETag of the row).

    The version is application-set (`version_id_generator=False`): the state core sets the new
    version when it fires a transition, so answers built before the flush already carry it, and
    every UPDATE still says `WHERE version = <the version read>`. Any other change of the row
    bumps it once per flush (`_bump_versions`)."""

    state: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict:
        return {"version_id_col": cls.version, "version_id_generator": False}


@event.listens_for(Mapper, "after_configured")
def _flush_in_foreign_key_order() -> None:
    """Rows flush parents first. Without relationship() between two models, SQLAlchemy's unit of
    work orders their INSERTs by each mapper's `_sort_key` (the class name); rank it by the
    tables' foreign-key order instead, so a ledger transaction and its lines (or an event and its
    recipients) can be added together and flushed in one go."""
    rank = {table.name: index for index, table in enumerate(Base.metadata.sorted_tables)}
    for mapper in Base.registry.mappers:
        table = mapper.local_table
        name = getattr(table, "name", "")
        if name in rank and not mapper._sort_key.startswith("fk"):
            mapper._sort_key = f"fk{rank[name]:04d}.{mapper._sort_key}"


@event.listens_for(Session, "before_flush")
def _bump_versions(session: Session, _context, _instances) -> None:
    for obj in session.new:
        if isinstance(obj, Stateful) and obj.version is None:
            obj.version = 1
    for obj in session.dirty:
        if (
            isinstance(obj, Stateful)
            and not inspect(obj).attrs.version.history.has_changes()
            and session.is_modified(obj, include_collections=False)
        ):
            obj.version = obj.version + 1
