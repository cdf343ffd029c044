"""Accounts, products and ingested facts under real concurrency (PostgreSQL, separately
committing connections): the repositories' locks and conditional writes hold."""

from __future__ import annotations

import asyncio

from tests.conftest import postgres_only


@postgres_only
async def test_racing_creates_of_one_username_make_one_account(committed_client, committed_factory):
    op = await committed_factory.operator()
    # four pooled connections ready, so that no request runs to its commit while the others connect
    await asyncio.gather(*(committed_client.get("/v1/accounts/me", headers=op.headers) for _ in range(4)))
    body = {
        "role": "group_leader",
        "username": "raced-name",
        "password": "password-123",
        "display_name": "r",
        "profile": {"name": "r"},
    }
    answers = await asyncio.gather(*(committed_client.post("/v1/accounts", headers=op.headers, json=body) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"username_taken"}
    login = await committed_client.post("/v1/auth/token", data={"username": "raced-name", "password": "password-123"})
    assert login.status_code == 200


@postgres_only
async def test_racing_patches_of_an_account_keep_both_changes(committed_client, committed_factory):
    creator = await committed_factory.user("creator")
    for i in range(5):
        answers = await asyncio.gather(
            committed_client.patch("/v1/accounts/me", headers=creator.headers, json={"display_name": f"name {i}"}),
            committed_client.patch(
                "/v1/accounts/me", headers=creator.headers, json={"profile": {"followers": i, "accepting_orders": i % 2 == 0}}
            ),
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        me = (await committed_client.get("/v1/accounts/me", headers=creator.headers)).json()
        assert me["display_name"] == f"name {i}"
        assert me["profile"]["followers"] == i and me["profile"]["accepting_orders"] is (i % 2 == 0)


@postgres_only
async def test_racing_edits_of_a_product_keep_both_changes(committed_client, committed_factory):
    """An edit writes the whole row it locked: two edits of different fields at once both stay."""
    merchant = await committed_factory.user("merchant")
    product = (
        await committed_client.post(
            "/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10}
        )
    ).json()
    url = f"/v1/products/{product['id']}"
    for i in range(5):
        answers = await asyncio.gather(
            committed_client.patch(url, headers=merchant.headers, json={"title": f"title {i}"}),
            committed_client.patch(url, headers=merchant.headers, json={"inventory": 100 + i}),
            committed_client.patch(url, headers=merchant.headers, json={"brand": f"brand {i}"}),
        )
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        got = (await committed_client.get(url, headers=merchant.headers)).json()
        assert (got["title"], got["inventory"], got["brand"]) == (f"title {i}", 100 + i, f"brand {i}")


@postgres_only
async def test_racing_order_pushes_in_opposite_orders_do_not_deadlock(committed_client, committed_factory):
    """Two pushes rewriting the same orders, listed in opposite orders, lock them in one order:
    both succeed, one after the other."""
    platform = await committed_factory.user("platform")
    merchant = await committed_factory.user("merchant")
    product = (
        await committed_client.post(
            "/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10}
        )
    ).json()
    orders = [
        {
            "external_id": f"race-{i}",
            "shop_id": merchant.id,
            "product_id": product["id"],
            "channel": "live",
            "amount_fen": 100,
            "status": "paid",
            "paid_at": "2026-11-20T10:00:00+08:00",
        }
        for i in range(30)
    ]
    first = await committed_client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": orders})
    assert first.json() == {"inserted": 30, "updated": 0, "unchanged": 0}
    for round_ in range(4):
        pushes = [
            [{**o, "amount_fen": 1000 * round_ + 1} for o in orders],
            [{**o, "amount_fen": 1000 * round_ + 2} for o in reversed(orders)],
        ]
        answers = await asyncio.gather(
            *(committed_client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": push}) for push in pushes)
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert sorted(a.json()["updated"] for a in answers) == [30, 30]


@postgres_only
async def test_racing_pushes_of_one_live_session_keep_the_peak(committed_client, committed_factory):
    platform = await committed_factory.user("platform")
    creator = await committed_factory.user("creator")
    live = {
        "external_id": "ls-race",
        "host_id": creator.id,
        "started_at": "2026-11-20T10:00:00Z",
        "peak_viewers": 1,
        "room_url": "https://live.example/race",
    }
    assert (await committed_client.post("/v1/ingest/live-sessions", headers=platform.headers, json=live)).status_code == 201
    answers = await asyncio.gather(
        *(
            committed_client.post("/v1/ingest/live-sessions", headers=platform.headers, json={**live, "peak_viewers": peak})
            for peak in (40, 10, 30, 20)
        )
    )
    assert [a.status_code for a in answers] == [200, 200, 200, 200], [a.text for a in answers]
    again = await committed_client.post("/v1/ingest/live-sessions", headers=platform.headers, json=live)
    assert again.status_code == 200 and again.json()["peak_viewers"] == 40
