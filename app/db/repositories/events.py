"""Statements of the event feed and stream: the outbox's events, as each caller may see them, in
commit order.

A position is `(tx, key)`: on PostgreSQL the writing transaction's id and the event's id, and
only events whose transaction has ended are read (`tx` below the reader's snapshot xmin), so an
event that commits late sorts after every position handed out before it was visible. On SQLite,
whose writers are serialised, `tx` is 0 and the key is the rowid (insert order is commit order).
See `app.db.models.platform.Event`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.core.i18n import msg
from app.db.base import table_of
from app.db.models.platform import Event, EventRecipient, StreamTicket
from app.db.pagination import check_cursor_key, decode_cursor, encode_cursor
from app.db.repositories._lists import DIALECTS
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page
from app.db.session import dialect_of

events = table_of(Event)
event_recipients = table_of(EventRecipient)
stream_tickets = table_of(StreamTicket)

# PostgreSQL: the oldest transaction this statement's snapshot sees in progress that may be
# writing this database's events (transactions of other databases, which pg_stat_activity names,
# cannot), else the snapshot's xmax. Events of transactions below it are final: whatever commits
# later has a transaction id at or above it and sorts after. (The cluster-wide xmin would do too,
# but lets any other database's long transaction hold this feed back.)
_SETTLED = literal_column(
    "(SELECT coalesce(min(x::text::bigint), pg_snapshot_xmax(pg_current_snapshot())::text::bigint)"
    " FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE (x::text::bigint % 4294967296) NOT IN (SELECT backend_xid::text::bigint FROM pg_stat_activity"
    " WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL))",
    BigInteger,
)
_ROWID = literal_column("events.rowid", BigInteger)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]
    tx: int = 0
    key: Any = None  # the position's second part: the id (PostgreSQL) or the rowid (SQLite)

    @property
    def position(self) -> str:
        return encode_position(self.tx, self.key)


def _key(dialect: str) -> ColumnElement[Any]:
    return events.c.id if dialect == "postgresql" else _ROWID


# the reader's own transaction, if it wrote (its own events are visible to it; in the tests one
# transaction holds a whole test)
_OWN = literal_column("coalesce(pg_current_xact_id_if_assigned()::text::bigint, -1)", BigInteger)


def _settled(dialect: str) -> ColumnElement[bool] | None:
    return or_(events.c.tx < _SETTLED, events.c.tx == _OWN) if dialect == "postgresql" else None


def _page(dialect: str, *, everyone: bool, after: bool) -> Select:
    """A page of the events a caller sees, in commit order: an operator every event, anyone
    else those that concern it (its `event_recipients` rows)."""
    key = _key(dialect)
    query = select(events.c.id, events.c.type, events.c.occurred_at, events.c.data, events.c.tx, key.label("key"))
    if not everyone:
        query = query.where(
            events.c.id.in_(select(event_recipients.c.event_id).where(event_recipients.c.account_id == bindparam("account_id")))
        )
    settled = _settled(dialect)
    if settled is not None:
        query = query.where(settled)
    if after:
        query = query.where(tuple_(events.c.tx, key) > tuple_(bindparam("after_tx"), bindparam("after_key", type_=key.type)))
    return query.order_by(events.c.tx, key).limit(bindparam("limit", type_=Integer))


# one statement per (dialect, an operator's or an account's, first page or a later one)
_PAGES = {
    (dialect, everyone, after): _page(dialect, everyone=everyone, after=after)
    for dialect in DIALECTS
    for everyone in (False, True)
    for after in (False, True)
}


def _latest(dialect: str) -> Select:
    key = _key(dialect)
    query = select(events.c.tx, key.label("key"))
    settled = _settled(dialect)
    if settled is not None:
        query = query.where(settled)
    return query.order_by(events.c.tx.desc(), key.desc()).limit(1)


_LATEST = {dialect: _latest(dialect) for dialect in DIALECTS}
_POSITION_OF = {
    dialect: select(events.c.tx, _key(dialect).label("key")).where(events.c.id == bindparam("id")) for dialect in DIALECTS
}

# the position before every event (the key's type is the dialect's: an id, or a rowid)
_START: dict[str, tuple[int, Any]] = {"postgresql": (0, ""), "sqlite": (0, 0)}


def start_position(session: AsyncSession) -> tuple[int, Any]:
    return _START[dialect_of(session).name]


def encode_position(tx: int, key: Any) -> str:
    return encode_cursor([tx, key])


async def decode_position(session: AsyncSession, cursor: str, *, loc: list[str | int]) -> tuple[int, Any]:
    """The position a cursor carries (also an event id, as `Last-Event-ID` and `?after=` give
    it): a malformed one or an unknown event is a 422, never a page or a database error."""
    value = decode_cursor(cursor) if not cursor.startswith("evt_") else cursor
    if isinstance(value, str):  # an event id: the position of that event
        check_cursor_key(value, "evt")
        found = await position_of(session, value)
        if found is None:
            raise ValidationFailed(msg("no event {event_id}", event_id=value), loc=loc)
        return found
    key_type = type(start_position(session)[1])
    if isinstance(value, list) and len(value) == 2 and type(value[0]) is int and type(value[1]) is key_type:
        return value[0], value[1]
    raise ValidationFailed("malformed cursor", loc=loc)


async def position_of(session: AsyncSession, event_id: str) -> tuple[int, Any] | None:
    row = (await run(session, _POSITION_OF[dialect_of(session).name], {"id": event_id})).first()
    return None if row is None else (row.tx, row.key)


async def latest_position(session: AsyncSession) -> tuple[int, Any]:
    """The position after every event readable now: a stream started here yields what commits
    from now on."""
    row = (await run(session, _LATEST[dialect_of(session).name])).first()
    return start_position(session) if row is None else (row.tx, row.key)


async def events_after(
    session: AsyncSession, role: str, account_id: str, *, limit: int, after: tuple[int, Any] | None
) -> list[EventRecord]:
    """Up to `limit` events the caller sees after the position `after` (None: from the start),
    in commit order."""
    statement = _PAGES[dialect_of(session).name, role == "operator", after is not None]
    params: dict[str, Any] = {"account_id": account_id, "limit": limit}
    if after is not None:
        params["after_tx"], params["after_key"] = after
    return [record_of(EventRecord, row) for row in await run(session, statement, params)]


def _fanout_page(dialect: str, *, after: bool) -> Select:
    """The next settled events after a position, every recipient's (the webhook fan-out):
    id, type and position only."""
    key = _key(dialect)
    query = select(events.c.id, events.c.type, events.c.tx, key.label("key"))
    settled = _settled(dialect)
    if settled is not None:
        query = query.where(settled)
    if after:
        query = query.where(tuple_(events.c.tx, key) > tuple_(bindparam("after_tx"), bindparam("after_key", type_=key.type)))
    return query.order_by(events.c.tx, key).limit(bindparam("limit", type_=Integer))


_FANOUT_PAGES = {(dialect, after): _fanout_page(dialect, after=after) for dialect in DIALECTS for after in (False, True)}


def _latest_id(dialect: str) -> Select:
    query = select(events.c.id)
    settled = _settled(dialect)
    if settled is not None:
        query = query.where(settled)
    return query.order_by(events.c.tx.desc(), _key(dialect).desc()).limit(1)


_LATEST_ID = {dialect: _latest_id(dialect) for dialect in DIALECTS}


@dataclass(frozen=True, slots=True)
class Settled:
    id: str
    type: str
    tx: int
    key: Any

    @property
    def at(self) -> tuple[int, Any]:
        return self.tx, self.key


async def settled_after(session: AsyncSession, after: tuple[int, Any] | None, limit: int) -> list[Settled]:
    """Up to `limit` events after the position `after` (None: from the start), in commit order,
    of transactions that have ended: whatever commits later sorts after them."""
    statement = _FANOUT_PAGES[dialect_of(session).name, after is not None]
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after_tx"], params["after_key"] = after
    return [record_of(Settled, row) for row in await run(session, statement, params)]


async def latest_event_id(session: AsyncSession) -> str | None:
    """The id of the last event in commit order of the transactions that have ended."""
    return (await run(session, _LATEST_ID[dialect_of(session).name])).scalar()


async def events_page(session: AsyncSession, role: str, account_id: str, *, limit: int, cursor: str | None) -> Page[EventRecord]:
    """Oldest first: a client follows the feed with `next_cursor`."""
    after = await decode_position(session, cursor, loc=["query", "cursor"]) if cursor else None
    rows = await events_after(session, role, account_id, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].position if more else None)


def _backlog(dialect: str) -> Select:
    key = _key(dialect)
    query = select(events.c.id).where(
        tuple_(events.c.tx, key) > tuple_(bindparam("after_tx"), bindparam("after_key", type_=key.type))
    )
    settled = _settled(dialect)
    if settled is not None:
        query = query.where(settled)
    tail = query.order_by(events.c.tx, key).limit(bindparam("cap", type_=Integer)).subquery()
    return select(func.count().label("waiting"), func.min(tail.c.id).label("oldest")).select_from(tail)


_BACKLOG = {dialect: _backlog(dialect) for dialect in DIALECTS}


async def backlog(session: AsyncSession, after: tuple[int, Any], *, cap: int) -> tuple[int, str | None]:
    """How many readable events follow the position `after` (counted up to `cap`), and the
    oldest id among them (None: none)."""
    params = {"after_tx": after[0], "after_key": after[1], "cap": cap}
    row = (await run(session, _BACKLOG[dialect_of(session).name], params)).one()
    return row.waiting, row.oldest


# --------------------------------------------------------------------------- stream tickets
_INSERT_TICKET = insert(stream_tickets)
_USE_TICKET = (
    update(stream_tickets)
    .where(
        stream_tickets.c.id == bindparam("t_id"),
        stream_tickets.c.used_at.is_(None),
        stream_tickets.c.expires_at > bindparam("t_now"),
    )
    .values(used_at=bindparam("t_now"))
    .returning(stream_tickets.c.account_id, stream_tickets.c.role, stream_tickets.c.session_id)
)
_PURGE_TICKETS = stream_tickets.delete().where(stream_tickets.c.expires_at < bindparam("before"))


async def add_ticket(
    session: AsyncSession, digest: str, account_id: str, role: str, session_id: str, expires_at: datetime
) -> None:
    params = {"id": digest, "account_id": account_id, "role": role, "session_id": session_id}
    await run(session, _INSERT_TICKET, {**params, "expires_at": expires_at, "used_at": None})


async def use_ticket(session: AsyncSession, digest: str, now: datetime) -> tuple[str, str, str | None] | None:
    """(account, role, login session) of an unexpired, unused ticket, which this uses up; None
    otherwise (two streams racing on one ticket: the row's UPDATE lets one of them have it)."""
    row = (await run(session, _USE_TICKET, {"t_id": digest, "t_now": now})).first()
    return None if row is None else (row.account_id, row.role, row.session_id)


async def purge_tickets(session: AsyncSession, before: datetime) -> None:
    await run(session, _PURGE_TICKETS, {"before": before})


prepare_module(globals())
