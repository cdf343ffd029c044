"""The outreach module's request paths on PostgreSQL run repository statements only: no ORM
session is built (`LeanSession`, app/db/session.py) to open a conversation, write and read
messages, view a contact or read the quotas."""

from __future__ import annotations

from app.db.session import LeanSession
from tests.conftest import postgres_only


@postgres_only
async def test_outreach_paths_build_no_orm_session(committed_client, committed_factory, monkeypatch):
    client = committed_client
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    built: list[str] = []
    original = LeanSession._build_orm
    monkeypatch.setattr(LeanSession, "_build_orm", lambda self: (built.append(current), original(self)))
    current = "open"
    r = await client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": creator.id})
    assert r.status_code == 201, r.text
    conversation = r.json()["id"]
    steps = [
        ("open again", client.post("/v1/conversations", headers=creator.headers, json={"counterpart_id": merchant.id})),
        ("post", client.post(f"/v1/conversations/{conversation}/messages", headers=merchant.headers, json={"text": "你好"})),
        ("messages", client.get(f"/v1/conversations/{conversation}/messages", headers=creator.headers)),
        ("conversations", client.get("/v1/conversations", headers=creator.headers)),
        (
            "first view",
            client.post(f"/v1/creators/{creator.id}/contact-views", headers=merchant.headers, json={"field": "phone"}),
        ),
        ("view", client.post(f"/v1/creators/{creator.id}/contact-views", headers=merchant.headers, json={"field": "wechat"})),
        ("quotas", client.get("/v1/quotas/me", headers=merchant.headers)),
    ]
    for current, call in steps:  # `current` names the step in what the patched _build_orm records
        r = await call
        assert r.status_code < 300, (current, r.text)
    assert built == []
