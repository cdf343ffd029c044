"""Parts of the client contract (spec/client-contract.md, "Language, time, parameters"):
unknown query parameters are 422 naming them; idempotency compares the request's meaning."""

from __future__ import annotations

import json

from tests.conftest import Factory


async def test_an_unknown_query_parameter_is_422_naming_it(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.get("/v1/task-orders", headers=merchant.headers, params={"state": "pending_acceptance"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed" and "state" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["query", "state"]
    # declared ones still work, including a dependency's (the page's limit and cursor)
    r = await client.get("/v1/task-orders", headers=merchant.headers, params={"status": "in_progress", "limit": 5})
    assert r.status_code == 200, r.text
    # an operation without query parameters refuses any
    r = await client.get("/v1/wallet", headers=merchant.headers, params={"verbose": "1"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "verbose"]


async def test_idempotency_compares_meaning_not_bytes(client, factory: Factory):
    merchant = await factory.user("merchant")
    headers = {**merchant.headers, "Idempotency-Key": "meaning-1", "Content-Type": "application/json"}
    body = {"title": "Once", "price_fen": 100, "inventory": 3}
    first = await client.post("/v1/products", headers=headers, content=json.dumps(body))
    assert first.status_code == 201, first.text
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)  # other order, other white space
    again = await client.post("/v1/products", headers=headers, content=reordered)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["id"] == first.json()["id"]
    changed = await client.post("/v1/products", headers=headers, content=json.dumps({**body, "inventory": 4}))
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"


async def test_every_signed_in_caller_reads_business_time(client, factory: Factory):
    creator = await factory.user("creator")
    before = await factory.now()
    await factory.advance(3600)
    r = await client.get("/v1/clock", headers=creator.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["test_clock"] is True and body["now"].endswith("Z"), body
    from datetime import datetime, timedelta

    now = datetime.fromisoformat(body["now"].replace("Z", "+00:00"))
    assert now - before >= timedelta(seconds=3600)
    assert (await client.get("/v1/clock")).status_code == 401
