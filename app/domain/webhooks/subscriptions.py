"""Webhook subscriptions and the deliveries a subscriber may see."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import real_now
from app.core.errors import NotFound
from app.db.base import id_for, new_id
from app.db.models.webhooks import WebhookSubscription
from app.db.repositories import webhooks as repo
from app.db.repositories.webhooks import SubscriptionRecord
from app.domain.schemas import PageOut
from app.domain.webhooks import targets
from app.domain.webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    SecretRotate,
    SecretRotatedOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
)
from app.state.core import Actor

ROTATION_OVERLAP = timedelta(hours=24)


def webhook_out(sub: SubscriptionRecord) -> WebhookOut:
    return WebhookOut(
        id=sub.id,
        url=sub.url,
        event_types=sub.event_types,
        active=sub.active,
        enabled=sub.active,
        disabled_reason=None if sub.active else sub.disabled_reason,
        created_at=sub.created_at,
    )


async def create_subscription(session: AsyncSession, actor: Actor, body: WebhookCreate) -> WebhookOut:
    await targets.check(body.url)  # 422 webhook_url_not_allowed before anything is written
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
            "previous_secret": None,
            "previous_secret_expires_at": None,
            "failing_since": None,
            "disabled_reason": None,
        },
    )
    return webhook_out(sub)


async def list_subscriptions(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> PageOut[WebhookOut]:
    page = await repo.subscriptions_page(session, actor.id, limit=limit, cursor=cursor)
    return PageOut[WebhookOut](items=[webhook_out(s) for s in page.items], next_cursor=page.next_cursor)


async def update_subscription(session: AsyncSession, actor: Actor, subscription_id: str, body: WebhookUpdate) -> WebhookOut:
    """Change the URL (checked as at creation), the event types, or whether it is enabled.
    Disabling keeps pending deliveries waiting; enabling sends them and ends a failing streak."""
    values: dict[str, Any] = {}
    if body.url is not None:
        await targets.check(body.url)
        values["url"] = body.url
    if body.event_types is not None:
        values["event_types"] = body.event_types
    if body.enabled is not None:
        values["active"] = body.enabled
        values["disabled_reason"] = None if body.enabled else "owner"
        if body.enabled:
            values["failing_since"] = None
    sub = await repo.update_subscription(session, actor.id, subscription_id, values)
    if sub is None:
        raise NotFound(f"webhook {subscription_id} not found")
    return webhook_out(sub)


async def delete_subscription(session: AsyncSession, actor: Actor, subscription_id: str) -> None:
    """Delete the webhook with its deliveries; nothing more is sent to it."""
    if not await repo.delete_subscription(session, actor.id, subscription_id):
        raise NotFound(f"webhook {subscription_id} not found")


async def rotate_secret(session: AsyncSession, actor: Actor, subscription_id: str, body: SecretRotate) -> SecretRotatedOut:
    """A new secret (the caller's, or one made here), returned this once. For 24 h deliveries
    carry a signature by each secret (`v1=<new>,v1=<old>`), so receivers can switch over."""
    secret = body.secret or f"whsec_{secrets.token_urlsafe(32)}"
    expires_at = real_now() + ROTATION_OVERLAP
    sub = await repo.rotate_secret(session, actor.id, subscription_id, secret, expires_at)
    if sub is None:
        raise NotFound(f"webhook {subscription_id} not found")
    return SecretRotatedOut(id=sub.id, secret=secret, previous_secret_expires_at=expires_at)


async def list_deliveries(
    session: AsyncSession, actor: Actor, subscription_id: str, *, status: str | None, limit: int, cursor: str | None
) -> PageOut[DeliveryOut]:
    if not await repo.owns_subscription(session, actor.id, subscription_id):
        raise NotFound(f"webhook {subscription_id} not found")
    page = await repo.deliveries_page(session, subscription_id, status=status, limit=limit, cursor=cursor)
    log = await repo.attempts_of(session, [r.id for r in page.items])
    items = [
        DeliveryOut.model_validate(r).model_copy(update={"attempt_log": [AttemptOut.model_validate(a) for a in log[r.id]]})
        for r in page.items
    ]
    return PageOut[DeliveryOut](items=items, next_cursor=page.next_cursor)
