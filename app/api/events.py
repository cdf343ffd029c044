"""Routes of the events module: the event feed, webhooks, the in-app inbox and the SMS log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from app.api.deps import CurrentActor, CurrentLogin, Operator, Page, Session, actor_of_token, oauth2
from app.api.routing import TxRoute
from app.core.config import get_settings
from app.core.errors import Unauthenticated, ValidationFailed
from app.core.i18n import msg
from app.domain import events, webhooks
from app.domain.accounts import ensure_live
from app.domain.events import EventPageOut, NotificationOut, Position, SmsOut, StreamTicketOut
from app.domain.schemas import PageOut
from app.domain.webhooks import (
    DeliveryOut,
    DeliveryStatus,
    SecretRotate,
    SecretRotatedOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(route_class=TxRoute)
# The stream holds no transaction (nor a connection) while it is open: each look for new events
# takes a session of its own; so it is served outside TxRoute.
stream_router = APIRouter()


@router.get("/v1/events", response_model=EventPageOut, tags=["events"], name="list_events")
async def list_events(session: Session, actor: CurrentActor, page: Page):
    """The events that concern the caller (every event for an operator), oldest first. Every
    answer carries `next_cursor`, also the last page's: polling with it yields exactly the
    later events; `has_more` says whether more are ready now."""
    return await events.list_events(session, actor, limit=page.limit, cursor=page.cursor)


@router.post("/v1/events/stream-tickets", response_model=StreamTicketOut, tags=["events"], name="create_stream_ticket")
async def create_stream_ticket(session: Session, login: CurrentLogin):
    """A single-use ticket (60 s) for `GET /v1/events/stream?ticket=…`: browsers' `EventSource`
    cannot send an `Authorization` header. It belongs to the caller's login session: after a
    logout, password change or suspension it is refused, and a stream it opened closes."""
    actor, session_id = login
    return await events.issue_stream_ticket(session, actor, session_id)


_STREAM_QUERY = frozenset({"after", "ticket"})


@stream_router.get(
    "/v1/events/stream",
    tags=["events"],
    name="stream_events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `id: <event id>`, `event: <type>`, `data: <the event JSON>` "
            "(EventOut); a comment line at least every 15 s",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream_events(
    request: Request,
    token: Annotated[str | None, Depends(oauth2)],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=200, description="resume after this event id (as Last-Event-ID)")] = None,
    ticket: Annotated[str | None, Query(max_length=200, description="a stream ticket instead of a bearer token")] = None,
) -> StreamingResponse:
    """The caller's events as they commit, the same as `GET /v1/events` (every event for an
    operator): it resumes after `Last-Event-ID` (or `?after=<event id>`) with none lost or
    repeated, else starts with the events from now on; any replica serves it. Authenticated by
    a bearer token or by `?ticket=` (POST /v1/events/stream-tickets)."""
    unknown = sorted(set(request.query_params) - _STREAM_QUERY)
    if unknown:
        raise ValidationFailed(msg("unknown query parameter: {names}", names=", ".join(unknown)), loc=["query", unknown[0]])
    maker = request.app.state.sessionmaker
    async with maker() as session:
        if ticket and not token:
            actor, session_id = await events.redeem_stream_ticket(session, ticket)
            await session.commit()  # used up, whatever the check below says
            await ensure_live(session, session_id, actor.id, actor.role)
        else:
            actor, session_id = await actor_of_token(session, token)
        position = await events.stream_start(session, last_event_id=last_event_id, after=after)
        await session.commit()
    return StreamingResponse(
        _sse(request, actor, position, session_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(request: Request, actor, position: Position, session_id: str) -> AsyncIterator[bytes]:
    """The stream; it closes once the login session that opened it (by its bearer token or its
    ticket) ends (logout, password change, suspension), within the liveness check's second."""
    settings = get_settings()
    maker = request.app.state.sessionmaker
    yield b"retry: 2000\n: stream open\n\n"
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        async with maker() as session:
            try:
                await ensure_live(session, session_id, actor.id, actor.role)
            except Unauthenticated:
                yield b": session ended\n\n"
                return
            batch = await events.stream_batch(session, actor, position)
            await session.rollback()
        for event, reached in batch:
            yield f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()
            position = reached  # sent: a resumption starts after it
        if batch:
            quiet_since = time.monotonic()
            if len(batch) == 100:
                continue  # more are ready
        elif time.monotonic() - quiet_since >= settings.event_stream_keepalive_seconds:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(settings.event_stream_poll_seconds)


@router.post(
    "/v1/webhooks", response_model=WebhookOut, status_code=status.HTTP_201_CREATED, tags=["events"], name="create_webhook"
)
async def create_webhook(body: WebhookCreate, session: Session, actor: CurrentActor):
    """Subscribe a URL to event types (`task_order.accepted`, `task_order.*` or `*`). Events
    written afterwards that concern the caller (every event for an operator) are POSTed to it,
    signed with `LC-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
    The secret is never returned."""
    return await webhooks.create_subscription(session, actor, body)


@router.get("/v1/webhooks", response_model=PageOut[WebhookOut], tags=["events"], name="list_webhooks")
async def list_webhooks(session: Session, actor: CurrentActor, page: Page):
    """The caller's own webhook subscriptions, newest first."""
    return await webhooks.list_subscriptions(session, actor, limit=page.limit, cursor=page.cursor)


@router.patch("/v1/webhooks/{webhook_id}", response_model=WebhookOut, tags=["events"], name="update_webhook")
async def update_webhook(webhook_id: str, body: WebhookUpdate, session: Session, actor: CurrentActor):
    """Change a webhook's `url` (checked as at creation: 422 `webhook_url_not_allowed`),
    `event_types`, or `enabled`. A disabled webhook receives nothing; enabling it again sends the
    deliveries that were pending and ends a failing streak. 404 for another account's."""
    return await webhooks.update_subscription(session, actor, webhook_id, body)


@router.api_route(
    "/v1/webhooks/{webhook_id}",
    methods=["DELETE"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    tags=["events"],
    name="delete_webhook",
)
async def delete_webhook(webhook_id: str, session: Session, actor: CurrentActor) -> Response:
    """Delete a webhook with its deliveries. 404 for another account's."""
    await webhooks.delete_subscription(session, actor, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/webhooks/{webhook_id}/rotate-secret", response_model=SecretRotatedOut, tags=["events"], name="rotate_webhook_secret"
)
async def rotate_webhook_secret(webhook_id: str, session: Session, actor: CurrentActor, body: SecretRotate | None = None):
    """Replace the signing secret with `secret` (or one the service makes), returned this once.
    For 24 h deliveries carry a signature by each: `LC-Signature: t=…,v1=<new>,v1=<old>`."""
    return await webhooks.rotate_secret(session, actor, webhook_id, body or SecretRotate())


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries", response_model=PageOut[DeliveryOut], tags=["events"], name="list_webhook_deliveries"
)
async def list_webhook_deliveries(
    webhook_id: str,
    session: Session,
    actor: CurrentActor,
    page: Page,
    status: Annotated[DeliveryStatus | None, Query()] = None,
):
    """Deliveries of one of the caller's webhooks (404 for another account's), newest first,
    each with its attempts (status code, error, duration)."""
    return await webhooks.list_deliveries(session, actor, webhook_id, status=status, limit=page.limit, cursor=page.cursor)


@router.get("/v1/notifications", response_model=PageOut[NotificationOut], tags=["events"], name="list_notifications")
async def list_notifications(
    session: Session,
    actor: CurrentActor,
    page: Page,
    unread: Annotated[bool | None, Query(description="only unread (true) or read (false)")] = None,
):
    """The caller's in-app inbox (站内信), newest first, with `read_at`."""
    return await events.list_notifications(session, actor, unread=unread, limit=page.limit, cursor=page.cursor)


@router.post(
    "/v1/notifications/{notification_id}/read", response_model=NotificationOut, tags=["events"], name="read_notification"
)
async def read_notification(notification_id: str, session: Session, actor: CurrentActor):
    """Mark one of the caller's notifications read (idempotent: `read_at` keeps the first time)."""
    return await events.mark_read(session, actor, notification_id)


@router.get("/v1/admin/sms", response_model=PageOut[SmsOut], tags=["events"], name="list_sms")
async def list_sms(session: Session, _: Operator, page: Page, phone: Annotated[str | None, Query(max_length=32)] = None):
    """Every SMS the service sent or tried to send (operator), newest first: `recorded` by the
    default recorder adapter, `queued` → `sent` / `failed` through the HTTP gateway."""
    return await events.list_sms(session, phone=phone, limit=page.limit, cursor=page.cursor)
