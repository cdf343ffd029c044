"""Fan-out from the event outbox into deliveries.

The relay keeps a cursor (`webhook_fanout_cursor`) below which every event has been fanned
out. Ids are time-ordered but a transaction may commit after a later-id one, so the cursor
only moves up to `SETTLE` before now and (PostgreSQL) before the start of the oldest open
transaction, whose events may still commit with older ids; events above it are re-scanned each
run and de-duplicated by the unique (subscription, event) constraint."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.db.base import id_for
from app.db.models.webhooks import WebhookDelivery
from app.db.repositories import webhooks as repo
from app.db.repositories.webhooks import SubscriptionRecord

SETTLE_SECONDS = 30.0
# An open transaction holds the cursor back (its events may commit with ids drawn long ago),
# unless it has been open longer than this: a stuck session must not stop fan-out for good.
OPEN_TRANSACTION_WAIT_SECONDS = 600.0

FANOUT_BATCH = 500
FANOUT_MAX_BATCHES = 200

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _id_floor(prefix: str, moment: datetime) -> str:
    """The smallest id `new_id(prefix)` could have produced at `moment`."""
    value = int(moment.timestamp() * 1000) << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def matches(event_types: list[str], event_type: str) -> bool:
    machine = event_type.rsplit(".", 1)[0]
    return "*" in event_types or event_type in event_types or f"{machine}.*" in event_types


def _delivery(sub: SubscriptionRecord, event_id: str, event_type: str, now: datetime) -> dict[str, Any]:
    return {
        "id": id_for(WebhookDelivery),
        "subscription_id": sub.id,
        "event_id": event_id,
        "event_type": event_type,
        "status": "pending",
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


async def _oldest_open_transaction(session: AsyncSession, now: datetime) -> datetime | None:
    """Start of the oldest other transaction open on this database (PostgreSQL; None on
    SQLite, whose writers are serialised). A batch of timers fired in one transaction under lock
    contention can stay open for tens of seconds: its first events carry ids drawn at its start
    and become visible only at its commit."""
    oldest = await repo.oldest_open_transaction(session)
    if oldest is None or oldest < now - timedelta(seconds=OPEN_TRANSACTION_WAIT_SECONDS):
        return None
    return oldest


async def fan_out(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Create the deliveries of events not yet fanned out. One relay at a time does it (the
    cursor row is locked; another replica skips). Returns how many deliveries were created."""
    now = now or real_now()
    created = 0
    async with sessionmaker() as session:
        last = await repo.lock_fanout_cursor(session)
        if last is None:
            if await repo.has_fanout_cursor(session) or not await repo.create_fanout_cursor(session):
                return 0  # another relay holds it
            last = ""
        settled = now
        oldest = await _oldest_open_transaction(session, now)
        if oldest is not None:
            settled = min(settled, oldest)
        horizon = _id_floor("evt", settled - timedelta(seconds=SETTLE_SECONDS))
        subs = await repo.active_subscriptions(session)
        if not subs:
            # Nothing to deliver: every settled event is done (a later subscription only
            # receives events written after it).
            if horizon > last:
                await repo.move_fanout_cursor(session, horizon)
            await session.commit()
            return 0
        after = new_cursor = last
        for _ in range(FANOUT_MAX_BATCHES):
            events = await repo.events_after(session, after, FANOUT_BATCH)
            if not events:
                break
            created += await _fan_out_batch(session, subs, events, now)
            for event_id, _ in events:
                if event_id <= horizon:
                    new_cursor = event_id
            after = events[-1][0]
            if len(events) < FANOUT_BATCH:
                break
        if new_cursor > last:
            await repo.move_fanout_cursor(session, new_cursor)
        await session.commit()
    return created
