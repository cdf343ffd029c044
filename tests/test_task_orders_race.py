"""Racing requests on one task order or one wallet, on PostgreSQL with real connections:
exactly one transition wins, money is conserved, no balance goes negative."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.conftest import postgres_only
from tests.test_task_orders_support import CANCEL, act, create_order, minute, ready_merchant, wallet


async def _pending_order(client, factory, amount=1_000_000, hours=1):
    merchant, product = await ready_merchant(client, factory, amount=amount)
    creator = await factory.user("creator")
    now = await factory.now()
    created = await create_order(client, merchant, creator, product, minute(now + timedelta(days=2)), hours=hours)
    return merchant, creator, created


async def _conserved(client, merchant, creator, funds=1_000_000):
    m, c = await wallet(client, merchant), await wallet(client, creator)
    assert m["available_fen"] >= 0 and c["available_fen"] >= 0
    assert m["total_fen"] + c["total_fen"] == funds
    return m, c


@postgres_only
async def test_accept_vs_reject_exactly_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        merchant, creator, o = await _pending_order(client, factory)
        a, b = await asyncio.gather(act(client, creator, o["id"], "accept"), act(client, creator, o["id"], "reject"))
        assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
        final = (await client.get(f"/v1/task-orders/{o['id']}", headers=merchant.headers)).json()
        m, _ = await _conserved(client, merchant, creator)
        if final["state"] == "waiting_live":
            assert m["frozen_fen"] == 100_000
        else:
            assert final["state"] == "cancelled_rejected" and m == {**m, "frozen_fen": 0, "available_fen": 1_000_000}
        history = (await client.get(f"/v1/task-orders/{o['id']}/history", headers=merchant.headers)).json()
        assert len(history) == 2


@postgres_only
async def test_accept_vs_merchant_cancel_exactly_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        merchant, creator, o = await _pending_order(client, factory)
        a, b = await asyncio.gather(act(client, creator, o["id"], "accept"), act(client, merchant, o["id"], "cancel", CANCEL))
        codes = sorted([a.status_code, b.status_code])
        # cancel may also win after accept (both allowed in sequence) — but never both from the same state
        final = (await client.get(f"/v1/task-orders/{o['id']}", headers=merchant.headers)).json()
        history = (await client.get(f"/v1/task-orders/{o['id']}/history", headers=merchant.headers)).json()
        assert [h["from_state"] for h in history[1:]] == [h["to_state"] for h in history[:-1]][: len(history) - 1]
        if codes == [200, 409]:
            assert len(history) == 2
        else:
            assert codes == [200, 200] and [h["action"] for h in history] == ["create", "accept", "cancel"]
        m, c = await _conserved(client, merchant, creator)
        assert m["frozen_fen"] == (100_000 if final["state"] == "waiting_live" else 0)
        assert c["available_fen"] == (final["compensation_fen"] or 0)


@postgres_only
async def test_reject_vs_merchant_cancel_exactly_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        merchant, creator, o = await _pending_order(client, factory)
        a, b = await asyncio.gather(act(client, creator, o["id"], "reject"), act(client, merchant, o["id"], "cancel", CANCEL))
        assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
        m, c = await _conserved(client, merchant, creator)
        assert m == {**m, "available_fen": 1_000_000, "frozen_fen": 0} and c["total_fen"] == 0
        history = (await client.get(f"/v1/task-orders/{o['id']}/history", headers=merchant.headers)).json()
        assert len(history) == 2


@postgres_only
async def test_concurrent_orders_never_overspend(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    merchant, product = await ready_merchant(client, factory, amount=1_000_000)
    creator = await factory.user("creator", quotes={"dedicated_hourly_fen": 300_000, "shared_hourly_fen": 1})
    now = await factory.now()
    from tests.test_task_orders_support import order_body

    body = order_body(creator, product, minute(now + timedelta(days=2)), hours=1)
    answers = await asyncio.gather(*(client.post("/v1/task-orders", headers=merchant.headers, json=body) for _ in range(5)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 201, 201, 409, 409], [a.text for a in answers]
    assert all(a.json()["code"] == "insufficient_balance" for a in answers if a.status_code == 409)
    m = await wallet(client, merchant)
    assert m == {"account_id": merchant.id, "available_fen": 100_000, "frozen_fen": 900_000, "total_fen": 1_000_000}


@postgres_only
async def test_concurrent_bank_transfer_confirms_credit_once(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    merchant = await factory.user("merchant")
    op = await factory.operator()
    tid = (
        await client.post("/v1/wallet/top-ups", headers=merchant.headers, json={"amount_fen": 5000, "method": "bank_transfer"})
    ).json()["id"]
    answers = await asyncio.gather(
        *(client.post(f"/v1/wallet/top-ups/{tid}/{action}", headers=op.headers) for action in ("confirm", "confirm", "reject"))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409]
    state = (await client.get(f"/v1/wallet/top-ups/{tid}", headers=merchant.headers)).json()["state"]
    assert (await wallet(client, merchant))["available_fen"] == (5000 if state == "succeeded" else 0)


@postgres_only
async def test_merchant_cancel_vs_creator_cancel_exactly_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        merchant, creator, o = await _pending_order(client, factory)
        assert (await act(client, creator, o["id"], "accept")).status_code == 200
        a, b = await asyncio.gather(
            act(client, merchant, o["id"], "cancel", CANCEL), act(client, creator, o["id"], "cancel", CANCEL)
        )
        assert sorted([a.status_code, b.status_code]) == [200, 409], (a.text, b.text)
        m, c = await _conserved(client, merchant, creator)
        assert m["frozen_fen"] == 0 and c["available_fen"] == 0  # within 72 h of acceptance or creator's cancel
        history = (await client.get(f"/v1/task-orders/{o['id']}/history", headers=merchant.headers)).json()
        assert len(history) == 3
