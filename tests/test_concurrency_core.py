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


async def _due_top_ups(client, factory, app, n: int) -> tuple[object, list[str]]:
    """`n` pending bank-transfer top-ups of one merchant, business time moved past their expiry
    without sweeping."""
    from app.state import clock

    merchant = await factory.user("merchant")
    ids = []
    for i in range(n):
        r = await client.post(
            "/v1/wallet/top-ups",
            headers=merchant.headers,
            json={"amount_fen": 500 + i, "method": "bank_transfer", "reference": f"due-{i}"},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    async with app.state.sessionmaker() as session:
        await clock.advance(session, 8 * 86400)
        await session.commit()
    return merchant, ids


async def _expiries(app, ids: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.db.models.platform import TransitionRecord

    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(TransitionRecord.entity_id, func.count())
            .where(TransitionRecord.machine == "top_up", TransitionRecord.action == "expire")
            .where(TransitionRecord.entity_id.in_(ids))
            .group_by(TransitionRecord.entity_id)
        )
        return dict(rows.all())  # type: ignore[arg-type]


@postgres_only
async def test_sweepers_racing_reads_of_the_same_entities_fire_each_timer_once_without_deadlock(
    committed_client, committed_factory, committed_app
):
    """Reads fire an entity's due timers in the request (waiting for the entity, then the timer
    row); list reads fire those of their page (skipping a busy entity); sweepers claim timers
    with SKIP LOCKED and skip a busy entity. All at once on the same overdue top-ups: every
    single read is 200 and shows `expired`, every top-up expires exactly once, and no transaction
    is chosen as a deadlock victim (it would be a 5xx or an expiry lost to the rollback)."""
    from app.state.timers import sweep

    merchant, ids = await _due_top_ups(committed_client, committed_factory, committed_app, 16)
    maker = committed_app.state.sessionmaker
    reads = [committed_client.get(f"/v1/wallet/top-ups/{i}", headers=merchant.headers) for i in ids]
    lists = [committed_client.get("/v1/wallet/top-ups", headers=merchant.headers, params={"limit": 50}) for _ in range(3)]
    results = await asyncio.gather(*(sweep(maker) for _ in range(3)), *reads, *lists)
    answers = results[3:]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    assert all(a.json()["state"] == "expired" for a in answers[: len(ids)])
    for page in answers[len(ids) :]:  # a list skips an entity another transaction is firing: as committed
        shown = {item["id"]: item["state"] for item in page.json()["items"]}
        assert shown.keys() == set(ids) and set(shown.values()) <= {"expired", "pending"}, shown
    assert await _expiries(committed_app, ids) == dict.fromkeys(ids, 1)


@postgres_only
async def test_a_sweep_leaves_the_timer_of_an_entity_a_request_holds_due(committed_client, committed_factory, committed_app):
    """The sweeper never waits for a lock a request holds: the held top-up is skipped (its
    timer stays due, nothing is written for it) and the next sweep after the request ends
    fires it."""
    from app.state.timers import sweep
    from app.state.top_up import TOP_UP

    _, ids = await _due_top_ups(committed_client, committed_factory, committed_app, 3)
    maker = committed_app.state.sessionmaker
    held = ids[1]
    async with maker() as holder:
        await TOP_UP.load_locked(holder, held)  # a request in flight on this top-up
        fired = await asyncio.wait_for(sweep(maker), timeout=10)  # never waits for the lock
        assert fired == 2
        assert await _expiries(committed_app, ids) == {ids[0]: 1, ids[2]: 1}
        await holder.rollback()
    assert await sweep(maker) == 1
    assert await _expiries(committed_app, ids) == dict.fromkeys(ids, 1)
