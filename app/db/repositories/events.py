"""Statements of the event feed: the outbox's events, as each caller may see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.platform import Event, EventRecipient
from app.db.repositories._run import prepare_module
from app.db.repositories.pages import Page, keyset

events = Event.__table__
event_recipients = EventRecipient.__table__


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


def _visible_to(role: str, account_id: str) -> Select:
    """The events a caller sees: an operator every event, anyone else those that concern it
    (its `event_recipients` rows)."""
    query = select(events)
    if role == "operator":
        return query
    return query.where(events.c.id.in_(
        select(event_recipients.c.event_id).where(event_recipients.c.account_id == account_id)))


async def events_page(session: AsyncSession, role: str, account_id: str, *, limit: int,
                      cursor: str | None) -> Page[EventRecord]:
    """Oldest first: a client follows the feed with `next_cursor`."""
    return await keyset(session, _visible_to(role, account_id), events.c.id, EventRecord, limit=limit, cursor=cursor,
                        newest_first=False)


prepare_module(globals())
