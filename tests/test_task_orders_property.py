"""Property test: random sequences of task-order actions keep the money invariants — money is
conserved, no balance goes negative, frozen equals the open holds, every hold ends once."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Factory
from tests.test_task_orders_support import (
    CANCEL,
    act,
    fund,
    ledger_invariants,
    live,
    minute,
    order,
    wallet,
)

ACTIONS = [
    "create",
    "accept",
    "reject",
    "remind",
    "merchant_cancel",
    "creator_cancel",
    "live_start",
    "live_end",
    "approve",
    "advance",
    "dispute",
]
ACTIVE = {"pending_acceptance", "waiting_live", "live", "pending_review"}
FUNDS = 1_000_000


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 2), st.integers(1, 80)), min_size=1, max_size=14))
async def test_random_sequences_keep_money_invariants(client, factory: Factory, steps):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator", quotes={"dedicated_hourly_fen": 150_000, "shared_hourly_fen": 70_000})
    platform = await factory.user("platform")
    op = await factory.operator()
    await client.post("/v1/xingtu-binding", headers=merchant.headers, json={})
    await fund(client, merchant, FUNDS)
    product = (
        await client.post(
            "/v1/products",
            headers=merchant.headers,
            json={"title": "p", "price_fen": 100, "inventory": 10, "general_commission_bp": 1000},
        )
    ).json()["id"]
    orders: list[dict] = []
    sessions: dict[str, str] = {}
    for action, index, amount in steps:
        target = orders[index % len(orders)] if orders else None
        if action == "create" or target is None:
            now = await factory.now()
            r = await client.post(
                "/v1/task-orders",
                headers=merchant.headers,
                json={
                    "title": "随机任务",
                    "contact_name": "王",
                    "contact_phone": "13912345678",
                    "expected_start_at": (minute(now + timedelta(hours=amount + 1))).isoformat(),
                    "return_samples": False,
                    "session_type": "dedicated" if amount % 2 else "shared",
                    "hours": 1 + amount % 4,
                    "creator_id": creator.id,
                    "products": [{"product_id": product, "plan": "targeted", "commission_bp": amount * 10}],
                },
            )
            assert r.status_code in (201, 409), r.text
            if r.status_code == 201:
                orders.append(r.json())
            else:
                assert r.json()["code"] == "insufficient_balance"
            continue
        oid = target["id"]
        if action in ("accept", "reject"):
            r = await act(client, creator, oid, action)
        elif action == "remind":
            r = await act(client, merchant, oid, "remind")
        elif action == "merchant_cancel":
            r = await act(client, merchant, oid, "cancel", CANCEL)
        elif action == "creator_cancel":
            r = await act(client, creator, oid, "cancel", CANCEL)
        elif action == "approve":
            r = await act(client, merchant, oid, "approve")
        elif action == "advance":
            await factory.advance(amount * 3600)
            r = None
        elif action in ("live_start", "live_end"):
            ext = sessions.setdefault(oid, f"prop-{oid}")
            start = (await order(client, merchant, oid))["expected_start_at"]
            from datetime import datetime

            started = datetime.fromisoformat(start.replace("Z", "+00:00"))
            await live(
                client, platform, creator, ext, started, ended=started + timedelta(hours=1) if action == "live_end" else None
            )
            r = None
        else:  # dispute: open by the merchant, resolve with a random creator share
            r = await client.post(f"/v1/task-orders/{oid}/disputes", headers=merchant.headers, json={"reason": "x"})
            if r.status_code == 201:
                share = target["amount_fen"] * amount // 80
                r = await client.post(
                    f"/v1/disputes/{r.json()['id']}/resolve", headers=op.headers, json={"creator_share_fen": share}
                )
                assert r.status_code in (200, 409), r.text
                if r.status_code == 409:
                    assert r.json()["code"] == "insufficient_balance"
        if r is not None:
            assert r.status_code in (200, 201, 403, 409, 429), r.text
        # invariants after every step
        m, c = await wallet(client, merchant), await wallet(client, creator)
        assert m["available_fen"] >= 0 and m["frozen_fen"] >= 0 and c["available_fen"] >= 0 and c["frozen_fen"] == 0
        assert m["total_fen"] + c["total_fen"] == FUNDS
        listed = []
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/task-orders", headers=merchant.headers, params=params)).json()
            listed += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert m["frozen_fen"] == sum(o["amount_fen"] for o in listed if o["state"] in ACTIVE)
        for o in listed:
            assert (o["hold_status"] == "held") == (o["state"] in ACTIVE)
            if o["state"] not in ACTIVE:
                assert o["creator_received_fen"] >= 0
        assert c["total_fen"] == sum(o["creator_received_fen"] for o in listed)
    await ledger_invariants(factory.maker)
