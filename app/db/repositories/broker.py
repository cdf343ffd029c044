"""Statements of the broker relay: its position per broker target and the lease that lets one
relay at a time publish (claimed with `FOR UPDATE SKIP LOCKED`, like the webhook relay's
deliveries; SQLite serialises writers). The events themselves are read with the feed's
statements (`app.db.repositories.events`), in commit order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.broker import BrokerRelayPosition
from app.db.repositories._run import prepare_module, run
from app.db.session import dialect_of

positions = table_of(BrokerRelayPosition)

Position = tuple[int, Any]


@dataclass(frozen=True, slots=True)
class RelayState:
    broker: str
    position: Position
    last_event_id: str | None
    published: int
    lease_until: datetime | None
    claim_token: str | None


def _stored_key(key: Any) -> str:
    return str(key)


def _position(session: AsyncSession, tx: int, event_key: str) -> Position:
    """A stored position as the feed's statements take it (an id on PostgreSQL, a rowid on SQLite)."""
    return (tx, event_key if dialect_of(session).name == "postgresql" else int(event_key or 0))


# the row is free: never leased, or its lease ran out (the relay holding it died or hung)
_FREE = or_(positions.c.lease_until.is_(None), positions.c.lease_until < bindparam("now"))
_CLAIM = (
    update(positions)
    .where(
        positions.c.broker
        == select(positions.c.broker)
        .where(positions.c.broker == bindparam("b_broker"), _FREE)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    .values(claim_token=bindparam("token"), lease_until=bindparam("until"))
    .returning(positions.c.tx, positions.c.event_key)
)


def _create(dialect_insert):
    return (
        dialect_insert(positions)
        .values(
            broker=bindparam("b_broker"),
            tx=bindparam("b_tx"),
            event_key=bindparam("b_key"),
            last_event_id=None,
            published=0,
            lease_until=None,
            claim_token=None,
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["broker"])
        .returning(positions.c.broker)
    )


_CREATE = {"postgresql": _create(pg_insert), "sqlite": _create(sqlite_insert)}
_ADVANCE = (
    update(positions)
    .where(positions.c.broker == bindparam("b_broker"), positions.c.claim_token == bindparam("token"))
    .values(
        tx=bindparam("b_tx"),
        event_key=bindparam("b_key"),
        last_event_id=bindparam("b_last"),
        published=positions.c.published + bindparam("b_count"),
        lease_until=bindparam("until"),
        updated_at=bindparam("now"),
    )
    .returning(positions.c.broker)
)
_RELEASE = (
    update(positions)
    .where(positions.c.broker == bindparam("b_broker"), positions.c.claim_token == bindparam("token"))
    .values(claim_token=None, lease_until=None)
)
_STATE = select(positions).where(positions.c.broker == bindparam("b_broker"))


async def create_position(session: AsyncSession, broker: str, start: Position, now: datetime) -> bool:
    """The target's row at `start`, unless it exists (then False: the stored position stands)."""
    params = {"b_broker": broker, "b_tx": start[0], "b_key": _stored_key(start[1]), "now": now}
    return (await run(session, _CREATE[dialect_of(session).name], params)).first() is not None


async def claim(session: AsyncSession, broker: str, token: str, now: datetime, until: datetime) -> Position | None:
    """Take the lease of `broker`'s row and return its position; None when another relay holds
    the lease (or is claiming it right now: its row lock is skipped) or there is no row yet."""
    row = (await run(session, _CLAIM, {"b_broker": broker, "token": token, "now": now, "until": until})).first()
    return None if row is None else _position(session, row.tx, row.event_key)


async def advance(
    session: AsyncSession,
    broker: str,
    token: str,
    position: Position,
    last_event_id: str,
    count: int,
    now: datetime,
    until: datetime,
) -> bool:
    """Record that every event up to `position` is published, and renew the lease; False when
    this relay's lease was taken over (another relay publishes from the stored position now)."""
    params = {
        "b_broker": broker,
        "token": token,
        "b_tx": position[0],
        "b_key": _stored_key(position[1]),
        "b_last": last_event_id,
        "b_count": count,
        "now": now,
        "until": until,
    }
    return (await run(session, _ADVANCE, params)).first() is not None


async def release(session: AsyncSession, broker: str, token: str) -> None:
    await run(session, _RELEASE, {"b_broker": broker, "token": token})


async def state_of(session: AsyncSession, broker: str) -> RelayState | None:
    row = (await run(session, _STATE, {"b_broker": broker})).first()
    if row is None:
        return None
    return RelayState(
        broker=row.broker,
        position=_position(session, row.tx, row.event_key),
        last_event_id=row.last_event_id,
        published=row.published,
        lease_until=row.lease_until,
        claim_token=row.claim_token,
    )


prepare_module(globals())
