"""The event feed (`GET /v1/events`), the in-app inbox (站内信) and the SMS log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.platform import Event, EventRecipient, Notification, SmsMessage
from app.db.models.webhooks import SmsDispatch
from app.db.pagination import keyset_page
from app.domain import clock
from app.domain.errors import NotFound
from app.domain.schemas import Out
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


async def list_events(session: AsyncSession, actor: Actor, *, limit: int,
                      cursor: str | None) -> tuple[list[Event], str | None]:
    """Events that concern the caller (every event for an operator), oldest first."""
    query = select(Event)
    if actor.role != "operator":
        query = query.where(Event.id.in_(
            select(EventRecipient.event_id).where(EventRecipient.account_id == actor.id)))
    return await keyset_page(session, query, Event.id, limit=limit, cursor=cursor, newest_first=False)


async def list_notifications(session: AsyncSession, actor: Actor, *, unread: bool | None, limit: int,
                             cursor: str | None) -> tuple[list[Notification], str | None]:
    query = select(Notification).where(Notification.account_id == actor.id)
    if unread is True:
        query = query.where(Notification.read_at.is_(None))
    elif unread is False:
        query = query.where(Notification.read_at.is_not(None))
    return await keyset_page(session, query, Notification.id, limit=limit, cursor=cursor)


async def mark_read(session: AsyncSession, actor: Actor, notification_id: str) -> Notification:
    """Own notifications only (404 otherwise); reading twice keeps the first `read_at`."""
    note = await session.scalar(select(Notification).where(
        Notification.id == notification_id, Notification.account_id == actor.id).with_for_update())
    if note is None:
        raise NotFound(f"notification {notification_id} not found")
    if note.read_at is None:
        note.read_at = await clock.now(session)
        await session.flush()
    return note


async def list_sms(session: AsyncSession, *, phone: str | None, limit: int,
                   cursor: str | None) -> tuple[list[SmsOut], str | None]:
    query = select(SmsMessage)
    if phone:
        query = query.where(SmsMessage.phone == phone)
    rows, next_cursor = await keyset_page(session, query, SmsMessage.id, limit=limit, cursor=cursor)
    errors: dict[str, str | None] = {}
    if rows:
        errors = dict((await session.execute(select(SmsDispatch.sms_id, SmsDispatch.last_error).where(
            SmsDispatch.sms_id.in_([r.id for r in rows])))).tuples().all())
    return [SmsOut.model_validate(r).model_copy(update={"last_error": errors.get(r.id)}) for r in rows], next_cursor
