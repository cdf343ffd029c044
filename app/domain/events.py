"""The event feed (`GET /v1/events`), the in-app inbox (站内信) and the SMS log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import real_now
from app.core.errors import NotFound, Unauthenticated
from app.core.i18n import msg
from app.core.times import UtcDatetime
from app.db.models.platform import SmsStatus
from app.db.repositories import events as events_repo
from app.db.repositories import notifications as notifications_repo
from app.domain.notifications import NOTIFICATION_KINDS, NotificationData
from app.domain.schemas import Out, PageOut
from app.state import clock
from app.state.core import Actor


class EventOut(Out):
    id: str
    type: str
    occurred_at: UtcDatetime
    data: dict[str, Any]


class NotificationOut(Out):
    id: str
    kind: Annotated[str, NOTIFICATION_KINDS]
    title: str
    body: str
    data: NotificationData | None = None
    created_at: UtcDatetime
    read_at: UtcDatetime | None = None


class SmsOut(Out):
    id: str
    account_id: str | None
    phone: str
    text: str
    status: SmsStatus
    attempts: int
    created_at: UtcDatetime
    sent_at: UtcDatetime | None = None
    last_error: str | None = None


class EventPageOut(Out):
    items: list[EventOut]
    next_cursor: str = Field(
        description="the position after this page's last event (on the last page too): poll with it for later events"
    )
    has_more: bool = Field(description="whether more events are ready now after this page")


async def list_events(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> EventPageOut:
    """Events that concern the caller (every event for an operator), in commit order. The
    feed never dead-ends: `next_cursor` is always a position to resume from, and an event that
    commits later than another is always found after it (app/db/repositories/events.py)."""
    page = await events_repo.events_page(session, actor.role, actor.id, limit=limit, cursor=cursor)
    items = [EventOut.model_validate(e) for e in page.items]
    if page.next_cursor is not None:
        position = page.next_cursor
    elif page.items:
        position = page.items[-1].position
    else:  # nothing after the given position yet: it stays the position
        position = cursor or events_repo.encode_position(*events_repo.start_position(session))
    return EventPageOut(items=items, next_cursor=position, has_more=page.next_cursor is not None)


# -- the stream (GET /v1/events/stream) --------------------------------------------------------
STREAM_TICKET_SECONDS = 60
Position = tuple[int, Any]


class StreamTicketOut(Out):
    ticket: str = Field(description="pass as `GET /v1/events/stream?ticket=…`: once, within `expires_in` seconds")
    expires_in: int = Field(description="seconds until the ticket expires", examples=[STREAM_TICKET_SECONDS])


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue_stream_ticket(session: AsyncSession, actor: Actor, session_id: str) -> StreamTicketOut:
    """A single-use ticket opening the caller's stream without a header (browsers' EventSource
    cannot send one), bound to the caller's login session: once that ends, the ticket and the
    stream it opened are refused too. Only its digest is kept; tickets expired for an hour are
    purged."""
    ticket = secrets.token_urlsafe(32)
    now = real_now()
    expires = now + timedelta(seconds=STREAM_TICKET_SECONDS)
    await events_repo.purge_tickets(session, now - timedelta(hours=1))
    await events_repo.add_ticket(session, _digest(ticket), actor.id, actor.role, session_id, expires)
    return StreamTicketOut(ticket=ticket, expires_in=STREAM_TICKET_SECONDS)


async def redeem_stream_ticket(session: AsyncSession, ticket: str) -> tuple[Actor, str]:
    """The ticket's owner and login session; the ticket is used up (401 for an unknown, used or
    expired one). Whether the session is still live is the caller's check."""
    found = await events_repo.use_ticket(session, _digest(ticket), real_now())
    account_id, role, session_id = found or ("", "", None)
    if session_id is None:  # unknown, used, expired (or issued before tickets had a session)
        raise Unauthenticated("the stream ticket is unknown, used or expired (POST /v1/events/stream-tickets)")
    return Actor(account_id, role), session_id


async def stream_start(session: AsyncSession, *, last_event_id: str | None, after: str | None) -> Position:
    """Where a stream starts: after `Last-Event-ID` (or `?after=`, an event id), else after
    every event readable now (the stream then carries what commits from now on)."""
    if last_event_id:
        return await events_repo.decode_position(session, last_event_id, loc=["header", "Last-Event-ID"])
    if after:
        return await events_repo.decode_position(session, after, loc=["query", "after"])
    return await events_repo.latest_position(session)


async def stream_batch(
    session: AsyncSession, actor: Actor, position: Position, limit: int = 100
) -> list[tuple[EventOut, Position]]:
    """The next events for the caller after `position`, in commit order, each with its own
    position (where the stream stands once it is sent)."""
    rows = await events_repo.events_after(session, actor.role, actor.id, limit=limit, after=position)
    return [(EventOut.model_validate(e), (e.tx, e.key)) for e in rows]


async def list_notifications(
    session: AsyncSession, actor: Actor, *, unread: bool | None, limit: int, cursor: str | None
) -> PageOut[NotificationOut]:
    page = await notifications_repo.notifications_page(session, actor.id, unread=unread, limit=limit, cursor=cursor)
    return PageOut[NotificationOut](items=[NotificationOut.model_validate(n) for n in page.items], next_cursor=page.next_cursor)


async def mark_read(session: AsyncSession, actor: Actor, notification_id: str) -> NotificationOut:
    """Own notifications only (404 otherwise); reading twice keeps the first `read_at`."""
    note = await notifications_repo.mark_read(session, actor.id, notification_id, await clock.now(session))
    if note is None:
        raise NotFound(msg("notification {notification_id} not found", notification_id=notification_id))
    return NotificationOut.model_validate(note)


async def list_sms(session: AsyncSession, *, phone: str | None, limit: int, cursor: str | None) -> PageOut[SmsOut]:
    page = await notifications_repo.sms_page(session, phone=phone, limit=limit, cursor=cursor)
    return PageOut[SmsOut](items=[SmsOut.model_validate(s) for s in page.items], next_cursor=page.next_cursor)
