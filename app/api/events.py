"""Routes of the events module: the event feed, webhooks, the in-app inbox and the SMS log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from app.api.deps import CurrentActor, Operator, Page, Session
from app.api.routing import TxRoute
from app.domain import events, webhooks
from app.domain.events import EventPageOut, NotificationOut, SmsOut
from app.domain.schemas import PageOut
from app.domain.webhooks import DeliveryOut, WebhookCreate, WebhookOut

router = APIRouter(route_class=TxRoute)


@router.get("/v1/events", response_model=EventPageOut, tags=["events"], name="list_events")
async def list_events(session: Session, actor: CurrentActor, page: Page):
    """The events that concern the caller (every event for an operator), oldest first. Every
    answer carries `next_cursor`, also the last page's: polling with it yields exactly the
    later events; `has_more` says whether more are ready now."""
    return await events.list_events(session, actor, limit=page.limit, cursor=page.cursor)


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


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries", response_model=PageOut[DeliveryOut], tags=["events"], name="list_webhook_deliveries"
)
async def list_webhook_deliveries(
    webhook_id: str,
    session: Session,
    actor: CurrentActor,
    page: Page,
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
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
