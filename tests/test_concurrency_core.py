"""Racing requests on PostgreSQL with real connections."""

from __future__ import annotations

import asyncio

from tests.conftest import postgres_only


@postgres_only
async def test_concurrent_idempotent_posts_create_once(committed_client, committed_factory):
    merchant = await committed_factory.user("merchant")
    headers = {**merchant.headers, "Idempotency-Key": "race-1"}
    body = {"title": "Once", "price_fen": 1, "inventory": 1}
    answers = await asyncio.gather(*(committed_client.post("/v1/products", headers=headers, json=body)
                                     for _ in range(5)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {201, 409}
    listed = (await committed_client.get("/v1/products", headers=merchant.headers,
                                          params={"shop_id": merchant.id})).json()
    assert len(listed["items"]) == 1
