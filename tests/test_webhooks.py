"""Webhooks through HTTP, delivered to a real receiver on 127.0.0.1: signatures, matching,
retries with back-off, giving up, leases of crashed workers, and racing relays (PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import timedelta

import pytest

from app.core.clock import real_now
from app.db.models.platform import Event, EventRecipient
from app.domain import webhooks
from app.domain.webhooks import deliver_due
from tests.conftest import Factory, postgres_only
from tests.test_webhooks_support import Receiver, verify

# the receivers of these tests listen on 127.0.0.1 (LC_WEBHOOK_ALLOWED_HOSTS)
pytestmark = pytest.mark.usefixtures("loopback_receivers")
SECRET = "whsec-test-0123456789"


async def emit(maker, type_: str, recipients: list[str], data: dict | None = None) -> str:
    """Write an outbox event the way the core does (an event row and its recipients)."""
    await asyncio.sleep(0.002)  # ids order by millisecond: keep the test's order unambiguous
    async with maker() as session:
        event = Event(type=type_, occurred_at=real_now(), data=data or {"n": 1})
        session.add(event)
        await session.flush()
        session.add_all([EventRecipient(event_id=event.id, account_id=a) for a in recipients])
        await session.commit()
        return event.id


async def subscribe(client, user, url: str, types: list[str], secret: str = SECRET) -> dict:
    r = await client.post("/v1/webhooks", headers=user.headers, json={"url": url, "event_types": types, "secret": secret})
    assert r.status_code == 201, r.text
    return r.json()


async def deliveries(client, user, webhook_id: str) -> list[dict]:
    r = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def later(seconds: float):
    return real_now() + timedelta(seconds=seconds)


async def test_create_validate_and_list_own(client, factory: Factory):
    creator = await factory.user("creator")
    other = await factory.user("merchant")
    hook = await subscribe(client, creator, "https://example.com/hooks", ["task_order.accepted", "*"])
    assert hook["event_types"] == ["task_order.accepted", "*"] and hook["active"] is True
    assert "secret" not in hook
    for body, loc in [
        ({"url": "ftp://x/y", "event_types": ["*"], "secret": SECRET}, "url"),
        ({"url": "not a url", "event_types": ["*"], "secret": SECRET}, "url"),
        ({"url": "https://x.io", "event_types": [], "secret": SECRET}, "event_types"),
        ({"url": "https://x.io", "event_types": ["Bad Type"], "secret": SECRET}, "event_types"),
        ({"url": "https://x.io", "event_types": ["*"], "secret": "short"}, "secret"),
        ({"url": "https://x.io", "event_types": ["*"], "secret": SECRET, "extra": 1}, "extra"),
    ]:
        r = await client.post("/v1/webhooks", headers=creator.headers, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert loc in json.dumps(r.json()["errors"])
    assert (
        await client.post("/v1/webhooks", json={"url": "https://x.io", "event_types": ["*"], "secret": SECRET})
    ).status_code == 401
    mine = (await client.get("/v1/webhooks", headers=creator.headers)).json()["items"]
    assert [h["id"] for h in mine] == [hook["id"]]
    assert (await client.get("/v1/webhooks", headers=other.headers)).json()["items"] == []
    r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=other.headers)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await client.get("/v1/webhooks/whk_missing/deliveries", headers=creator.headers)).status_code == 404


async def test_signed_delivery_with_retries(client, factory: Factory):
    creator = await factory.user("creator")
    other = await factory.user("creator")
    with Receiver(SECRET, fail_first=2) as receiver:
        hook = await subscribe(client, creator, receiver.url, ["task_order.accepted"])
        wanted = await emit(factory.maker, "task_order.accepted", [creator.id], {"id": "tko_1", "x": "是"})
        await emit(factory.maker, "task_order.created", [creator.id])  # other type
        await emit(factory.maker, "task_order.accepted", [other.id])  # not the owner's

        assert await deliver_due(factory.maker) == 1
        [d] = await deliveries(client, creator, hook["id"])
        assert d["event_id"] == wanted and d["event_type"] == "task_order.accepted"
        assert d["status"] == "pending" and d["attempts"] == 1 and d["last_status_code"] == 500
        assert d["attempt_log"][0]["status_code"] == 500 and d["attempt_log"][0]["error"] == "http_500"
        # not due again before the back-off (1 s) has passed
        assert await deliver_due(factory.maker) == 0
        assert await deliver_due(factory.maker, now=later(1.5)) == 1  # second failure, back-off 2 s
        assert await deliver_due(factory.maker, now=later(2.5)) == 0
        assert await deliver_due(factory.maker, now=later(4)) == 1
        assert await deliver_due(factory.maker, now=later(3600)) == 0

    assert len(receiver.requests) == 3 and len(receiver.succeeded) == 1
    for req in receiver.requests:
        assert req["valid"], req["headers"]
        assert req["json"]["id"] == wanted and req["json"]["type"] == "task_order.accepted"
        assert req["json"]["data"] == {"id": "tko_1", "x": "是"} and "occurred_at" in req["json"]
        assert set(req["json"]) == {"id", "type", "occurred_at", "data"}
    assert not verify("wrong-secret-123", receiver.requests[0]["headers"]["LC-Signature"], receiver.requests[0]["body"])
    [d] = await deliveries(client, creator, hook["id"])
    assert d["status"] == "succeeded" and d["attempts"] == 3 and d["last_status_code"] == 200
    assert d["next_attempt_at"] is None and d["finished_at"] is not None
    assert [a["status_code"] for a in d["attempt_log"]] == [500, 500, 200]
    assert all(a["duration_ms"] >= 0 for a in d["attempt_log"])
    r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=creator.headers, params={"status": "failed"})
    assert r.json()["items"] == []


async def test_matching_rules_and_operator_sees_everything(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator")
    with Receiver(SECRET) as receiver:
        before = await emit(factory.maker, "campaign.created", [])
        op_hook = await subscribe(client, op, receiver.url, ["*"])
        machine_hook = await subscribe(client, creator, receiver.url, ["task_order.*"])
        e1 = await emit(factory.maker, "task_order.accepted", [creator.id])
        e2 = await emit(factory.maker, "task_order.settled", [creator.id])
        e3 = await emit(factory.maker, "campaign.created", [])  # concerns nobody in particular
        await emit(factory.maker, "top_up.confirmed", [creator.id])  # other machine
        assert await deliver_due(factory.maker) == 6
    assert {d["event_id"] for d in await deliveries(client, creator, machine_hook["id"])} == {e1, e2}
    op_events = {d["event_id"] for d in await deliveries(client, op, op_hook["id"])}
    assert {e1, e2, e3} <= op_events and before not in op_events  # only events after subscribing
    assert len(receiver.requests) == 6 and all(r["valid"] for r in receiver.requests)


async def test_gives_up_after_max_attempts(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(webhooks.relay, "MAX_ATTEMPTS", 3)
    creator = await factory.user("creator")
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    hook = await subscribe(client, creator, dead_url, ["*"])
    await emit(factory.maker, "task_order.accepted", [creator.id])
    made = 0
    for seconds in (0, 1.5, 4, 10, 100):
        made += await deliver_due(factory.maker, now=later(seconds))
    assert made == 3
    [d] = await deliveries(client, creator, hook["id"])
    assert d["status"] == "failed" and d["attempts"] == 3 and d["next_attempt_at"] is None
    # generic, never the transport's text (security.md)
    assert d["last_status_code"] is None and d["last_error"] == "connect_failed"
    assert len(d["attempt_log"]) == 3 and all(a["error"] == "connect_failed" for a in d["attempt_log"])


async def test_backoff_schedule():
    assert [webhooks.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert webhooks.backoff(40) == webhooks.BACKOFF_CAP_SECONDS


async def test_crashed_worker_lease_expires_then_delivered(client, factory: Factory):
    creator = await factory.user("creator")
    with Receiver(SECRET) as receiver:
        hook = await subscribe(client, creator, receiver.url, ["*"])
        event_id = await emit(factory.maker, "task_order.accepted", [creator.id])
        await webhooks.fan_out(factory.maker)
        jobs = await webhooks.claim_due(factory.maker)  # claimed, then the worker "dies"
        assert [j.event_id for j in jobs] == [event_id]
        assert await deliver_due(factory.maker) == 0  # leased: not due
        assert await deliver_due(factory.maker, now=later(webhooks.LEASE_SECONDS - 5)) == 0
        assert await deliver_due(factory.maker, now=later(webhooks.LEASE_SECONDS + 1)) == 1
        assert await deliver_due(factory.maker, now=later(3600)) == 0
    assert len(receiver.requests) == 1 and receiver.requests[0]["json"]["id"] == event_id
    [d] = await deliveries(client, creator, hook["id"])
    assert d["status"] == "succeeded" and d["attempts"] == 2
    assert d["attempt_log"][0]["error"] == "lease_expired"
    assert d["attempt_log"][1]["status_code"] == 200


async def test_fan_out_is_idempotent_and_skips_earlier_events(client, factory: Factory):
    creator = await factory.user("creator")
    old = await emit(factory.maker, "task_order.accepted", [creator.id])
    hook = await subscribe(client, creator, "http://127.0.0.1:9/never", ["*"])
    new = await emit(factory.maker, "task_order.accepted", [creator.id])
    assert await webhooks.fan_out(factory.maker) == 1
    assert await webhooks.fan_out(factory.maker) == 0  # past the cursor
    assert await webhooks.fan_out(factory.maker, now=later(60)) == 0
    assert [d["event_id"] for d in await deliveries(client, creator, hook["id"])] == [new]
    assert old != new


@postgres_only
async def test_racing_relays_deliver_each_event_once(committed_client, committed_factory, committed_app, monkeypatch):
    monkeypatch.setattr(webhooks.relay, "CLAIM_BATCH", 3)  # small claims: the relays contend row by row
    maker = committed_app.state.sessionmaker
    creator = await committed_factory.user("creator")
    with Receiver(SECRET) as receiver:
        hook = await subscribe(committed_client, creator, receiver.url, ["*"])
        ids = [await emit(maker, "task_order.accepted", [creator.id], {"n": n}) for n in range(12)]
        fanned = await asyncio.gather(*(webhooks.fan_out(maker) for _ in range(3)))
        assert sorted(fanned) == [0, 0, 12]
        counts = await asyncio.gather(*(deliver_due(maker) for _ in range(4)))
        assert sum(counts) == 12
        counts = await asyncio.gather(*(deliver_due(maker, now=later(3600)) for _ in range(4)))
        assert sum(counts) == 0
    assert sorted(r["json"]["id"] for r in receiver.requests) == sorted(ids)
    r = await committed_client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=creator.headers, params={"limit": 100})
    items = r.json()["items"]
    assert len(items) == 12 and all(d["status"] == "succeeded" and d["attempts"] == 1 for d in items)


async def test_a_lost_last_attempt_fails_the_delivery(client, factory: Factory, monkeypatch):
    monkeypatch.setattr(webhooks.relay, "MAX_ATTEMPTS", 1)
    creator = await factory.user("creator")
    with Receiver(SECRET) as receiver:
        hook = await subscribe(client, creator, receiver.url, ["*"])
        await emit(factory.maker, "task_order.accepted", [creator.id])
        await webhooks.fan_out(factory.maker)
        assert len(await webhooks.claim_due(factory.maker)) == 1  # claimed, then the worker "dies"
        assert await deliver_due(factory.maker, now=later(webhooks.LEASE_SECONDS + 1)) == 0
        assert await deliver_due(factory.maker, now=later(3600)) == 0
    assert receiver.requests == []
    [d] = await deliveries(client, creator, hook["id"])
    assert d["status"] == "failed" and d["attempts"] == 1 and d["next_attempt_at"] is None
    assert d["finished_at"] is not None and d["last_error"] == "lease_expired"
    assert [a["error"] for a in d["attempt_log"]] == ["lease_expired"]
