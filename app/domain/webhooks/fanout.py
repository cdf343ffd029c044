"""Fan-out from the event outbox into deliveries, in commit order.

The relay keeps a cursor (`webhook_fanout_cursor`): the last event fanned out. It reads the
events after that event's position `(tx, id)` (PostgreSQL; the rowid on SQLite) of transactions
that have ended, as `GET /v1/events` does (app/db/repositories/events.py, docs/events.md
"Commit order"): an event that commits late sorts after every position read before, so none is
skipped and none waits for a settle window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.db.base import id_for
from app.db.models.webhooks import DeliveryStatus, WebhookDelivery
from app.db.repositories import events as events_repo
from app.db.repositories import webhooks as repo
from app.db.repositories.webhooks import SubscriptionRecord

FANOUT_BATCH = 500
FANOUT_MAX_BATCHES = 200


def matches(event_types: list[str], event_type: str) -> bool:
    machine = event_type.rsplit(".", 1)[0]
    return "*" in event_types or event_type in event_types or f"{machine}.*" in event_types


def _delivery(sub: SubscriptionRecord, event_id: str, event_type: str, now: datetime) -> dict[str, Any]:
    return {
        "id": id_for(WebhookDelivery),
        "subscription_id": sub.id,
        "event_id": event_id,
        "event_type": event_type,
        "status": DeliveryStatus.pending,
        "attempts": 0,
        "next_attempt_at": now,
        "claim_token": None,
        "last_status_code": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }


async def _fan_out_batch(
    session: AsyncSession, subs: list[SubscriptionRecord], events: list[tuple[str, str]], now: datetime
) -> int:
    ids = [event_id for event_id, _ in events]
    recipients = await repo.recipients_of(session, ids)
    existing = await repo.delivered_pairs(session, ids)
    rows = []
    for event_id, event_type in events:
        for sub in subs:
            if event_id <= sub.since_event_id or (sub.id, event_id) in existing:
                continue
            if sub.owner_role != "operator" and sub.account_id not in recipients[event_id]:
                continue
            if not matches(sub.event_types, event_type):
                continue
            rows.append(_delivery(sub, event_id, event_type, now))
    await repo.insert_deliveries(session, rows)
    return len(rows)


async def fan_out(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Create the deliveries of the events committed since the cursor, in commit order. One
    relay at a time does it (the cursor row is locked; another replica skips). Returns how many
    deliveries were created."""
    now = now or real_now()
    created = 0
    async with sessionmaker() as session:
        last = await repo.lock_fanout_cursor(session)
        if last is None:
            if await repo.has_fanout_cursor(session) or not await repo.create_fanout_cursor(session):
                return 0  # another relay holds it
            last = ""
        subs = await repo.active_subscriptions(session)
        if not subs:
            # Nothing to deliver: every committed event is done (a later subscription only
            # receives events written after it).
            latest = await events_repo.latest_event_id(session)
            if latest is not None and latest != last:
                await repo.move_fanout_cursor(session, latest)
            await session.commit()
            return 0
        after = await events_repo.position_of(session, last) if last else None
        new_cursor = last
        for _ in range(FANOUT_MAX_BATCHES):
            batch = await events_repo.settled_after(session, after, FANOUT_BATCH)
            if not batch:
                break
            created += await _fan_out_batch(session, subs, [(e.id, e.type) for e in batch], now)
            after, new_cursor = batch[-1].at, batch[-1].id
            if len(batch) < FANOUT_BATCH:
                break
        if new_cursor != last:
            await repo.move_fanout_cursor(session, new_cursor)
        await session.commit()
    return created
