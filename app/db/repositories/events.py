"""Statements of the event feed: the outbox's events, as each caller may see them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.platform import Event, EventRecipient
from app.db.pagination import key_after, page_of
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page

events = table_of(Event)
event_recipients = table_of(EventRecipient)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


def _page(*, everyone: bool, after: bool) -> Select:
    """A page of the events a caller sees, oldest first: an operator every event, anyone else
    those that concern it (its `event_recipients` rows)."""
    query = select(events)
    if not everyone:
        query = query.where(
            events.c.id.in_(select(event_recipients.c.event_id).where(event_recipients.c.account_id == bindparam("account_id")))
        )
    if after:
        query = query.where(events.c.id > bindparam("after"))
    return query.order_by(events.c.id).limit(bindparam("limit", type_=Integer))


# one statement per (an operator's or an account's, first page or a later one): the fast lane
_PAGES = {(everyone, after): _page(everyone=everyone, after=after) for everyone in (False, True) for after in (False, True)}


async def events_page(session: AsyncSession, role: str, account_id: str, *, limit: int, cursor: str | None) -> Page[EventRecord]:
    """Oldest first: a client follows the feed with `next_cursor`."""
    after = key_after(cursor, events.c.id)
    params = {"account_id": account_id, "after": after, "limit": limit + 1}
    rows = await run(session, _PAGES[role == "operator", after is not None], params)
    return Page(*page_of([record_of(EventRecord, row) for row in rows], limit))


prepare_module(globals())
