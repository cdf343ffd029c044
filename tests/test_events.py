"""`GET /v1/events`: the events that concern the caller, oldest first, keyset-paged."""

from __future__ import annotations

from app.core.clock import real_now
from app.db.base import new_id
from app.db.models.platform import Event, EventRecipient
from tests.conftest import Factory, postgres_only
from tests.test_webhooks import emit


async def test_events_feed_is_scoped_and_oldest_first(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator")
    merchant = await factory.user("merchant")
    e1 = await emit(factory.maker, "task_order.created", [creator.id, merchant.id], {"id": "tko_1"})
    e2 = await emit(factory.maker, "task_order.accepted", [creator.id, merchant.id])
    e3 = await emit(factory.maker, "top_up.confirmed", [merchant.id])
    e4 = await emit(factory.maker, "task_order.settled", [creator.id])

    r = await client.get("/v1/events", headers=creator.headers, params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [e["id"] for e in page["items"]] == [e1, e2] and page["next_cursor"]
    first = page["items"][0]
    assert first["type"] == "task_order.created" and first["data"] == {"id": "tko_1"}
    assert set(first) == {"id", "type", "occurred_at", "data"}
    assert page["has_more"] is True
    r = await client.get("/v1/events", headers=creator.headers, params={"limit": 2, "cursor": page["next_cursor"]})
    last = r.json()
    # the last page does not dead-end (client-contract.md): its cursor is where a poller resumes
    assert [e["id"] for e in last["items"]] == [e4] and last["has_more"] is False and last["next_cursor"]
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": last["next_cursor"]})
    assert r.json()["items"] == [] and r.json()["next_cursor"] == last["next_cursor"] and r.json()["has_more"] is False
    e5 = await emit(factory.maker, "task_order.live_started", [creator.id])
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": last["next_cursor"]})
    assert [e["id"] for e in r.json()["items"]] == [e5]  # exactly the later events

    merchant_ids = [e["id"] for e in (await client.get("/v1/events", headers=merchant.headers)).json()["items"]]
    assert merchant_ids == [e1, e2, e3]
    op_ids = [e["id"] for e in (await client.get("/v1/events", headers=op.headers, params={"limit": 100})).json()["items"]]
    assert [i for i in op_ids if i in {e1, e2, e3, e4}] == [e1, e2, e3, e4]


async def test_an_empty_feed_still_gives_a_position_to_poll_from(client, factory: Factory):
    creator = await factory.user("creator")
    r = await client.get("/v1/events", headers=creator.headers)
    first = r.json()
    assert first["items"] == [] and first["has_more"] is False and first["next_cursor"]
    e1 = await emit(factory.maker, "task_order.created", [creator.id])
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": first["next_cursor"]})
    assert [e["id"] for e in r.json()["items"]] == [e1]


async def test_events_bad_input(client, factory: Factory):
    creator = await factory.user("creator")
    assert (await client.get("/v1/events")).status_code == 401
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": "%%%"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/events", headers=creator.headers, params={"limit": 0})).status_code == 422
    assert (await client.get("/v1/events", headers=creator.headers, params={"limit": 101})).status_code == 422


async def _emit_with_id(maker, event_id: str, recipients: list[str]) -> None:
    async with maker() as session:
        session.add(Event(id=event_id, type="task_order.created", occurred_at=real_now(), data={"n": 1}))
        await session.flush()
        session.add_all([EventRecipient(event_id=event_id, account_id=a) for a in recipients])
        await session.commit()


async def test_an_event_committed_after_a_later_id_is_never_skipped(committed_client, committed_factory: Factory):
    """Events without gaps (client-contract.md): the feed follows the commit order, not the
    ids' (an id is drawn before its transaction commits). An event whose id sorts before one
    a poller has already seen still reaches it. (Real commits: the `factory` fixture runs a
    whole test in one transaction.)"""
    client, factory = committed_client, committed_factory
    creator = await factory.user("creator")
    start = (await client.get("/v1/events", headers=creator.headers)).json()["next_cursor"]
    late = "evt_" + "z" * 26  # sorts after every id drawn today
    early = new_id("evt")  # drawn now, committed after `late`
    await _emit_with_id(factory.maker, late, [creator.id])
    seen = (await client.get("/v1/events", headers=creator.headers, params={"cursor": start})).json()
    assert [e["id"] for e in seen["items"]] == [late]
    await _emit_with_id(factory.maker, early, [creator.id])
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": seen["next_cursor"]})
    assert [e["id"] for e in r.json()["items"]] == [early]


@postgres_only
async def test_an_event_of_a_transaction_still_open_waits_for_it(committed_client, committed_factory: Factory):
    """On PostgreSQL a transaction that drew its event first and commits last holds back the
    events of later transactions until it ends, so a poller never passes it by."""
    client, factory = committed_client, committed_factory
    creator = await factory.user("creator")
    start = (await client.get("/v1/events", headers=creator.headers)).json()["next_cursor"]
    async with factory.maker() as open_tx:
        first = new_id("evt")
        open_tx.add(Event(id=first, type="task_order.created", occurred_at=real_now(), data={"n": 1}))
        await open_tx.flush()
        open_tx.add(EventRecipient(event_id=first, account_id=creator.id))
        await open_tx.flush()  # written, not committed
        second = await emit(factory.maker, "task_order.accepted", [creator.id])
        r = await client.get("/v1/events", headers=creator.headers, params={"cursor": start})
        assert r.json()["items"] == [] and r.json()["next_cursor"] == start  # held back, not passed
        await open_tx.commit()
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": start})
    assert [e["id"] for e in r.json()["items"]] == [first, second]


async def test_a_cursor_may_be_an_event_id(client, factory: Factory):
    """`?cursor=<event id>` (as SSE's Last-Event-ID gives it) resumes after that event; an
    unknown event id is 422."""
    creator = await factory.user("creator")
    e1 = await emit(factory.maker, "task_order.created", [creator.id])
    e2 = await emit(factory.maker, "task_order.accepted", [creator.id])
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": e1})
    assert [e["id"] for e in r.json()["items"]] == [e2]
    r = await client.get("/v1/events", headers=creator.headers, params={"cursor": new_id("evt")})
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"


async def test_a_stream_started_on_an_empty_outbox_sees_the_first_event(factory: Factory):
    """The position before every event compares below every real one on both databases (an
    SQLite rowid is an integer: a text key would sort after every row)."""
    from app.db.repositories import events as events_repo

    creator = await factory.user("creator")
    async with factory.maker() as session:
        start = await events_repo.latest_position(session)
    first = await emit(factory.maker, "task_order.created", [creator.id])
    async with factory.maker() as session:
        found = await events_repo.events_after(session, "creator", creator.id, limit=10, after=start)
    assert [e.id for e in found] == [first]
