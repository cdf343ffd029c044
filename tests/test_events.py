"""`GET /v1/events`: the events that concern the caller, oldest first, keyset-paged."""

from __future__ import annotations

from tests.conftest import Factory
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
