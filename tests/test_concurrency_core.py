"""Racing requests on PostgreSQL with real connections."""

from __future__ import annotations

import asyncio

from tests.conftest import postgres_only


@postgres_only
async def test_concurrent_idempotent_posts_create_once(committed_client, committed_factory):
    merchant = await committed_factory.user("merchant")
    headers = {**merchant.headers, "Idempotency-Key": "race-1"}
    body = {"title": "Once", "price_fen": 1, "inventory": 1}
    answers = await asyncio.gather(*(committed_client.post("/v1/products", headers=headers, json=body) for _ in range(5)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {201, 409}
    listed = (await committed_client.get("/v1/products", headers=merchant.headers, params={"shop_id": merchant.id})).json()
    assert len(listed["items"]) == 1


@postgres_only
async def test_sweepers_in_several_replicas_fire_each_timer_once(committed_client, committed_factory, committed_app):
    """Pending bank-transfer top-ups fall due for expiry; four sweepers (as in four replicas) run
    at once on their own connections: every top-up expires exactly once."""
    from sqlalchemy import func, select

    from app.db.models.platform import TransitionRecord
    from app.state import clock
    from app.state.timers import sweep

    merchant = await committed_factory.user("merchant")
    ids = []
    for i in range(12):
        r = await committed_client.post(
            "/v1/wallet/top-ups",
            headers=merchant.headers,
            json={"amount_fen": 1000 + i, "method": "bank_transfer", "reference": f"transfer-{i}"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    maker = committed_app.state.sessionmaker
    async with maker() as session:  # move business time past the 7-day expiry without sweeping
        await clock.advance(session, 8 * 86400)
        await session.commit()
    fired = await asyncio.gather(*(sweep(maker) for _ in range(4)))
    assert sum(fired) == 12, fired
    async with maker() as session:
        expiries = await session.scalar(
            select(func.count())
            .select_from(TransitionRecord)
            .where(TransitionRecord.machine == "top_up", TransitionRecord.action == "expire")
        )
    assert expiries == 12
    for top_up_id in ids:
        body = (await committed_client.get(f"/v1/wallet/top-ups/{top_up_id}", headers=merchant.headers)).json()
        assert body["state"] == "expired"
