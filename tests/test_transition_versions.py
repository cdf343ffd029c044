"""A transition is one conditional UPDATE: the version grows by exactly one per transition and
the event carries it; a transition fired on a row read before another request moved it loses
with 409 and writes nothing (no event, no money)."""

from __future__ import annotations

from datetime import timedelta

from app.core.errors import InvalidTransition
from app.db.repositories import task_orders as repo
from app.state import clock
from app.state.core import Actor
from app.state.task_order import TASK_ORDER
from tests.conftest import Factory
from tests.test_task_orders_support import CANCEL, act, create_order, ledger_invariants, minute, ready_merchant, wallet


async def _events_of(client, user, order_id: str) -> list[dict]:
    items = (await client.get("/v1/events", headers=user.headers, params={"limit": 100})).json()["items"]
    return [e for e in items if e["data"].get("id") == order_id]


async def test_each_transition_moves_the_version_by_one_and_its_event_says_so(client, factory: Factory):
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = minute(await factory.now() + timedelta(days=5))
    created = await create_order(client, merchant, creator, product_id, start)
    assert created["version"] == 1
    r = await act(client, merchant, created["id"], "remind")  # an internal transition with a column change
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    r = await act(client, creator, created["id"], "accept")
    assert r.status_code == 200 and r.json()["version"] == 3
    r = await act(client, merchant, created["id"], "cancel", CANCEL)
    assert r.status_code == 200 and r.json()["version"] == 4
    got = (await client.get(f"/v1/task-orders/{created['id']}", headers=merchant.headers)).json()
    assert got["version"] == 4
    versions = sorted((e["data"]["action"], e["data"]["version"]) for e in await _events_of(client, merchant, created["id"]))
    assert versions == [("accept", 3), ("cancel", 4), ("create", 1), ("remind", 2)]


async def test_a_stale_read_loses_and_writes_nothing(client, factory: Factory):
    """The creator's accept is computed from a read taken before the merchant cancelled: the
    conditional UPDATE matches no row, the answer is 409 naming the state the cancel left, and
    neither an event nor a ledger line of the accept is written."""
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = minute(await factory.now() + timedelta(days=5))
    created = await create_order(client, merchant, creator, product_id, start)
    async with factory.maker() as session:
        stale, _, _ = await repo.order_with_parts(session, created["id"], with_clock=False)
    r = await act(client, merchant, created["id"], "cancel", CANCEL)
    assert r.status_code == 200 and r.json()["state"] == "cancelled_by_merchant"
    before = await wallet(client, merchant)
    async with factory.maker() as session:
        now = await clock.now(session)
        try:
            await TASK_ORDER.fire(session, stale, "accept", Actor(creator.id, "creator"), now=now, changes={"accepted_at": now})
        except InvalidTransition as exc:
            assert exc.extra["state"] == "cancelled_by_merchant" and exc.extra["allowed_actions"] == []
        else:
            raise AssertionError("a stale accept went through")
        await session.commit()
    assert await wallet(client, merchant) == before
    actions = [e["data"]["action"] for e in await _events_of(client, merchant, created["id"])]
    assert sorted(actions) == ["cancel", "create"]
    history = (await client.get(f"/v1/task-orders/{created['id']}/history", headers=merchant.headers)).json()
    assert [h["action"] for h in history] == ["create", "cancel"]
    await ledger_invariants(factory.maker)
