"""The incentives' single-entity request paths, the event feed and the inbox stay lean on PostgreSQL
(`LeanSession`: no ORM session is built, every statement takes the repositories' fast lane)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db.session import LeanSession
from tests.conftest import postgres_only
from tests.test_incentives import SH, published_world


@pytest.fixture
def built(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = LeanSession._build_orm
    monkeypatch.setattr(LeanSession, "_build_orm", lambda self: (calls.append(1), original(self)))
    return calls


@postgres_only
async def test_contracts_redemptions_and_the_inbox_build_no_orm_session(committed_client, committed_factory, built):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    merchant = await committed_factory.user("merchant")
    built.clear()

    def ok(r, status=200):
        assert r.status_code == status, r.text
        assert built == [], r.request.url
        return r.json()

    contract = ok(
        await client.post(
            "/v1/provider-contracts", headers=w.provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
        ),
        201,
    )
    r = await client.post(
        "/v1/provider-contracts", headers=w.provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    assert r.status_code == 409 and built == []
    ok(await client.post(f"/v1/provider-contracts/{contract['id']}/accept", headers=merchant.headers))
    ok(await client.get(f"/v1/provider-contracts/{contract['id']}", headers=merchant.headers))
    ok(await client.get(f"/v1/provider-contracts/{contract['id']}/history", headers=merchant.headers))
    redemptions = [
        ok(
            await client.post(
                f"/v1/vouchers/{w.v2['id']}/redemptions",
                headers=w.provider.headers,
                json={"merchant_id": merchant.id, "amount_fen": 1_000, "use_date": str(use)},
            ),
            201,
        )
        for _ in range(3)
    ]
    r = await client.post(
        f"/v1/vouchers/{w.v1['id']}/redemptions",
        headers=w.provider.headers,
        json={"merchant_id": w.m[0].id, "amount_fen": 10**9, "use_date": str(use)},
    )
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance" and built == []
    a, b, c = (f"/v1/redemptions/{x['id']}" for x in redemptions)
    ok(await client.post(f"{a}/approve", headers=w.op.headers))
    ok(await client.post(f"{a}/fulfil", headers=w.op.headers))
    ok(await client.post(f"{b}/reject", headers=w.op.headers, json={"reason": "no slot"}))
    ok(await client.get(c, headers=merchant.headers))
    ok(await client.put("/v1/admin/holidays", headers=w.op.headers, json={"dates": [str(use)]}))

    inbox_owner = w.provider
    r = await client.post(
        "/v1/webhooks",
        headers=inbox_owner.headers,
        json={"url": "https://example.com/h", "event_types": ["*"], "secret": "whsec-0123456789"},
    )
    ok(r, 201)
    r = await client.post("/v1/notifications/ntf_missing/read", headers=inbox_owner.headers)
    assert r.status_code == 404 and built == []
    for unread in (None, "true", "false"):
        ok(await client.get("/v1/notifications", headers=inbox_owner.headers, params={"unread": unread} if unread else {}))
    page = ok(await client.get("/v1/events", headers=merchant.headers, params={"limit": 2}))
    assert page["next_cursor"]
    ok(await client.get("/v1/events", headers=merchant.headers, params={"limit": 2, "cursor": page["next_cursor"]}))
    ok(await client.get("/v1/events", headers=w.op.headers, params={"limit": 2}))
