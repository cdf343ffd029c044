"""End to end through a real workflow of the core (wallet top-ups): the transition's outbox
event reaches `GET /v1/events`, a signed webhook on 127.0.0.1, and the owner's inbox."""

from __future__ import annotations

import pytest

from app.domain.webhooks import deliver_due
from tests.conftest import Factory
from tests.test_webhooks_support import Receiver

# the receivers of these tests listen on 127.0.0.1 (LC_WEBHOOK_ALLOWED_HOSTS)
pytestmark = pytest.mark.usefixtures("loopback_receivers")
SECRET = "whsec-e2e-0123456789"


async def test_top_up_transitions_reach_feed_webhook_and_inbox(client, factory: Factory):
    op = await factory.operator()
    merchant = await factory.user("merchant")
    bystander = await factory.user("merchant")
    with Receiver(SECRET) as receiver:
        r = await client.post(
            "/v1/webhooks", headers=merchant.headers, json={"url": receiver.url, "event_types": ["top_up.*"], "secret": SECRET}
        )
        hook = r.json()
        r = await client.post(
            "/v1/wallet/top-ups", headers=merchant.headers, json={"amount_fen": 5000, "method": "bank_transfer"}
        )
        assert r.status_code == 201, r.text
        top_up = r.json()
        r = await client.post(f"/v1/wallet/top-ups/{top_up['id']}/confirm", headers=op.headers, json={})
        assert r.status_code == 200, r.text
        assert await deliver_due(factory.maker) >= 2

    feed = (await client.get("/v1/events", headers=merchant.headers, params={"limit": 100})).json()["items"]
    mine = [e for e in feed if e["data"].get("id") == top_up["id"]]
    assert [e["type"] for e in mine][:1] == ["top_up.created"] and len(mine) >= 2
    assert all(e["type"].startswith("top_up.") for e in mine)
    others = (await client.get("/v1/events", headers=bystander.headers)).json()["items"]
    assert all(e["data"].get("id") != top_up["id"] for e in others)

    got = [req["json"] for req in receiver.requests]
    assert sorted(g["id"] for g in got) == sorted(e["id"] for e in mine)  # sent concurrently: any order
    assert all(req["valid"] for req in receiver.requests)
    items = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=merchant.headers)).json()["items"]
    assert {d["status"] for d in items} == {"succeeded"}

    inbox = (await client.get("/v1/notifications", headers=merchant.headers)).json()["items"]
    assert any(n["kind"] == "top_up.confirmed" for n in inbox)
