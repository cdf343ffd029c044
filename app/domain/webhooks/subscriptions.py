"""Webhook subscriptions and the deliveries a subscriber may see."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import real_now
from app.core.errors import NotFound
from app.core.i18n import msg
from app.db.base import id_for, new_id
from app.db.models.webhooks import WebhookSubscription
from app.db.repositories import webhooks as repo
from app.domain.schemas import PageOut
from app.domain.webhooks.schemas import AttemptOut, DeliveryOut, WebhookCreate, WebhookOut
from app.state.core import Actor


async def create_subscription(session: AsyncSession, actor: Actor, body: WebhookCreate) -> WebhookOut:
    sub = await repo.insert_subscription(
        session,
        {
            "id": id_for(WebhookSubscription),
            "account_id": actor.id,
            "owner_role": actor.role,
            "url": body.url,
            "event_types": body.event_types,
            "secret": body.secret,
            "active": True,
            "since_event_id": new_id("evt"),
            "created_at": real_now(),
        },
    )
    return WebhookOut.model_validate(sub)


async def list_subscriptions(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> PageOut[WebhookOut]:
    page = await repo.subscriptions_page(session, actor.id, limit=limit, cursor=cursor)
    return PageOut[WebhookOut](items=[WebhookOut.model_validate(s) for s in page.items], next_cursor=page.next_cursor)


async def list_deliveries(
    session: AsyncSession, actor: Actor, subscription_id: str, *, status: str | None, limit: int, cursor: str | None
) -> PageOut[DeliveryOut]:
    if not await repo.owns_subscription(session, actor.id, subscription_id):
        raise NotFound(msg("webhook {webhook_id} not found", webhook_id=subscription_id))
    page = await repo.deliveries_page(session, subscription_id, status=status, limit=limit, cursor=cursor)
    log = await repo.attempts_of(session, [r.id for r in page.items])
    items = [
        DeliveryOut.model_validate(r).model_copy(update={"attempt_log": [AttemptOut.model_validate(a) for a in log[r.id]]})
        for r in page.items
    ]
    return PageOut[DeliveryOut](items=items, next_cursor=page.next_cursor)
