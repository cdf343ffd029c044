"""Regression (found by bench/stress.py): an event whose transaction stays open long — a batch of
timers fired in one transaction under lock contention — was skipped by the fan-out cursor when
the fan-out walked ids behind a settle window. The fan-out now reads in commit order (positions
`(tx, id)` of ended transactions, docs/events.md "Commit order"): a late commit sorts after every
position read before it, so it is delivered, and nothing waits for a window (PostgreSQL)."""

from __future__ import annotations

import pytest

from app.core.clock import real_now
from app.db.models.platform import Event, EventRecipient
from app.domain import webhooks
from tests.conftest import postgres_only
from tests.test_webhooks import deliveries, emit, subscribe

# the receivers of these tests listen on 127.0.0.1 (LC_WEBHOOK_ALLOWED_HOSTS)
pytestmark = pytest.mark.usefixtures("loopback_receivers")


@postgres_only
async def test_an_event_committed_long_after_its_id_was_drawn_is_still_delivered(
    committed_client, committed_factory, committed_app
):
    maker = committed_app.state.sessionmaker
    creator = await committed_factory.user("creator")
    hook = await subscribe(committed_client, creator, "http://127.0.0.1:9/never", ["*"])
    async with maker() as slow:  # a long transaction writing an event early
        event = Event(type="task_order.expired", occurred_at=real_now(), data={"n": 1})
        slow.add(event)
        await slow.flush()
        slow.add(EventRecipient(event_id=event.id, account_id=creator.id))
        await slow.flush()
        newer = await emit(maker, "task_order.accepted", [creator.id])
        # The relay runs while it is still open: the newer event waits behind it (it may not be
        # passed), the open one is not visible yet.
        assert await webhooks.fan_out(maker) == 0
        await slow.commit()
    assert await webhooks.fan_out(maker) == 2  # at once: no settle window
    delivered = {d["event_id"] for d in await deliveries(committed_client, creator, hook["id"])}
    assert {event.id, newer} <= delivered


@postgres_only
async def test_an_idle_open_transaction_does_not_hold_the_cursor(committed_client, committed_factory, committed_app):
    maker = committed_app.state.sessionmaker
    creator = await committed_factory.user("creator")
    await subscribe(committed_client, creator, "http://127.0.0.1:9/never", ["*"])
    newer = await emit(maker, "task_order.accepted", [creator.id])
    async with maker() as stuck:
        await stuck.execute(Event.__table__.select().limit(1))  # open, idle in transaction, wrote nothing
        assert await webhooks.fan_out(maker) == 1
        async with maker() as session:
            cursor = await session.get(webhooks.WebhookFanoutCursor, 1)
            assert cursor is not None and cursor.last_event_id == newer
        await stuck.rollback()
