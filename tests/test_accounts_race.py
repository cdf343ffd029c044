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
    body = {"role": "group_leader", "username": "raced-name", "password": "password-123", "display_name": "r",
            "profile": {"name": "r"}}
    answers = await asyncio.gather(*(committed_client.post("/v1/accounts", headers=op.headers, json=body)
                                     for _ in range(4)))
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
            committed_client.patch("/v1/accounts/me", headers=creator.headers,
                                   json={"profile": {"followers": i, "accepting_orders": i % 2 == 0}}))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        me = (await committed_client.get("/v1/accounts/me", headers=creator.headers)).json()
        assert me["display_name"] == f"name {i}"
        assert me["profile"]["followers"] == i and me["profile"]["accepting_orders"] is (i % 2 == 0)


@postgres_only
async def test_racing_edits_of_a_product_keep_both_changes(committed_client, committed_factory):
    """An edit writes the whole row it locked: two edits of different fields at once both stay."""
    merchant = await committed_factory.user("merchant")
    product = (await committed_client.post("/v1/products", headers=merchant.headers, json={
        "title": "P", "price_fen": 100, "inventory": 10})).json()
    url = f"/v1/products/{product['id']}"
    for i in range(5):
        answers = await asyncio.gather(
            committed_client.patch(url, headers=merchant.headers, json={"title": f"title {i}"}),
            committed_client.patch(url, headers=merchant.headers, json={"inventory": 100 + i}),
            committed_client.patch(url, headers=merchant.headers, json={"brand": f"brand {i}"}))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        got = (await committed_client.get(url, headers=merchant.headers)).json()
        assert (got["title"], got["inventory"], got["brand"]) == (f"title {i}", 100 + i, f"brand {i}")
