"""The event feed (`GET /v1/events`), the in-app inbox (站内信) and the SMS log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.db.pagination import encode_cursor
from app.db.repositories import events as events_repo
from app.db.repositories import notifications as notifications_repo
from app.domain.schemas import Out, PageOut
from app.state import clock
from app.state.core import Actor


class EventOut(Out):
    id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


class NotificationOut(Out):
    id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any] | None = None
    created_at: datetime
    read_at: datetime | None = None


class SmsOut(Out):
    id: str
    account_id: str | None
    phone: str
    text: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None


class EventPageOut(Out):
    items: list[EventOut]
    next_cursor: str = Field(
        description="the position after this page's last event (on the last page too): poll with it for later events"
    )
    has_more: bool = Field(description="whether more events are ready now after this page")


# The position before every event: the cursor of an empty first page (ids sort by time).
_BEFORE_EVERY_EVENT = encode_cursor("evt_" + "0" * 26)


async def list_events(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> EventPageOut:
    """Events that concern the caller (every event for an operator), oldest first. The feed
    never dead-ends: `next_cursor` is always a position to resume from."""
    page = await events_repo.events_page(session, actor.role, actor.id, limit=limit, cursor=cursor)
    items = [EventOut.model_validate(e) for e in page.items]
    if page.next_cursor is not None:
        position = page.next_cursor
    elif items:
        position = encode_cursor(items[-1].id)
    else:  # nothing after the given position yet: it stays the position
        position = cursor or _BEFORE_EVERY_EVENT
    return EventPageOut(items=items, next_cursor=position, has_more=page.next_cursor is not None)


async def list_notifications(
    session: AsyncSession, actor: Actor, *, unread: bool | None, limit: int, cursor: str | None
) -> PageOut[NotificationOut]:
    page = await notifications_repo.notifications_page(session, actor.id, unread=unread, limit=limit, cursor=cursor)
    return PageOut[NotificationOut](items=[NotificationOut.model_validate(n) for n in page.items], next_cursor=page.next_cursor)


async def mark_read(session: AsyncSession, actor: Actor, notification_id: str) -> NotificationOut:
    """Own notifications only (404 otherwise); reading twice keeps the first `read_at`."""
    note = await notifications_repo.mark_read(session, actor.id, notification_id, await clock.now(session))
    if note is None:
        raise NotFound(f"notification {notification_id} not found")
    return NotificationOut.model_validate(note)


async def list_sms(session: AsyncSession, *, phone: str | None, limit: int, cursor: str | None) -> PageOut[SmsOut]:
    page = await notifications_repo.sms_page(session, phone=phone, limit=limit, cursor=cursor)
    return PageOut[SmsOut](items=[SmsOut.model_validate(s) for s in page.items], next_cursor=page.next_cursor)
