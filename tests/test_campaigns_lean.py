"""The campaigns module's request paths on PostgreSQL run repository statements only: no ORM
session is built (`LeanSession`, app/db/session.py) for a signup's creation, reads and
transitions, the stock plan, cards and intents. (Lists fire due timers first: that query is the
core's, built per call.)"""

from __future__ import annotations

from app.db.session import LeanSession
from tests.conftest import postgres_only
from tests.test_campaigns import act, world


@postgres_only
async def test_signup_paths_build_no_orm_session(committed_client, committed_factory, monkeypatch):
    client = committed_client
    w = await world(client, committed_factory, shops=2)
    a, b = w.merchants
    cid = w.campaign["id"]
    built: list[str] = []
    original = LeanSession._build_orm
    monkeypatch.setattr(LeanSession, "_build_orm", lambda self: (built.append(current), original(self)))
    current = "create"
    r = await client.post(
        f"/v1/campaigns/{cid}/signups",
        headers=w.creator.headers,
        json={"shop_ids": [a.id, b.id], "planned_live_at": w.campaign["live_from"]},
    )
    assert r.status_code == 201, r.text
    signup = r.json()["id"]
    steps = [
        ("get", client.get(f"/v1/campaign-signups/{signup}", headers=a.headers)),
        ("campaign", client.get(f"/v1/campaigns/{cid}", headers=w.creator.headers)),
        ("approve", act(client, a, signup, "merchant-approve")),
        ("last approve", act(client, b, signup, "merchant-approve")),
        ("platform", act(client, w.op, signup, "platform-approve")),
        ("traffic", act(client, w.op, signup, "grant-traffic", {"traffic_units": 3})),
        (
            "submit",
            act(
                client,
                w.creator,
                signup,
                "submit-products",
                {"items": [{"product_id": w.products[a.id]["id"], "planned_quantity": 2}]},
            ),
        ),
        ("confirm", act(client, a, signup, "merchant-confirm-stock")),
        ("stock plan", client.get(f"/v1/campaigns/{cid}/stock-plan", headers=a.headers)),
        ("card", client.put(f"/v1/campaigns/{cid}/my-card", headers=w.creator.headers, json={})),
        (
            "intent",
            client.post(
                f"/v1/campaigns/{cid}/intents", headers=a.headers, json={"description": "d", "creator_ids": [w.creator.id]}
            ),
        ),
        ("intent alone", client.post(f"/v1/campaigns/{cid}/intents", headers=b.headers, json={"description": "d"})),
        ("history", client.get(f"/v1/campaign-signups/{signup}/history", headers=a.headers)),
    ]
    for current, call in steps:  # `current` names the step in what the patched _build_orm records
        r = await call
        assert r.status_code < 300, (current, r.text)
    assert built == []
