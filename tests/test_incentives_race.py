"""Racing redemptions on PostgreSQL with real connections: the voucher row is locked while the
amount is reserved, so two requests exceeding the balance together never both succeed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.conftest import postgres_only
from tests.test_incentives import (
    SH,
    add_months,
    advance_to,
    build_world,
    compute,
    local,
    publish,
    published_world,
    vouchers,
)


@postgres_only
async def test_concurrent_redemptions_never_exceed_the_balance(committed_client, committed_factory):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    voucher = w.v1  # 12,345 fen, bound to m1

    async def ask(amount: int):
        return await client.post(
            f"/v1/vouchers/{voucher['id']}/redemptions",
            headers=w.provider.headers,
            json={"merchant_id": w.m[0].id, "amount_fen": amount, "use_date": str(use)},
        )

    answers = await asyncio.gather(*(ask(5_000) for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 201, 409, 409], [a.text for a in answers]
    assert all(a.json()["code"] == "insufficient_balance" for a in answers if a.status_code == 409)
    listed = (await client.get("/v1/vouchers", headers=w.provider.headers)).json()["items"]
    assert next(v for v in listed if v["id"] == voucher["id"])["remaining_fen"] == 2_345


@postgres_only
async def test_concurrent_proposals_create_one_contract(committed_client, committed_factory):
    provider = await committed_factory.user("service_provider")
    merchant = await committed_factory.user("merchant")
    answers = await asyncio.gather(
        *(
            committed_client.post(
                "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
            )
            for _ in range(4)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    listed = (await committed_client.get("/v1/provider-contracts", headers=provider.headers)).json()
    assert len(listed["items"]) == 1


@postgres_only
async def test_accept_vs_decline_one_wins(committed_client, committed_factory):
    client = committed_client
    provider = await committed_factory.user("service_provider")
    for _ in range(3):
        merchant = await committed_factory.user("merchant")
        r = await client.post(
            "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
        )
        path = f"/v1/provider-contracts/{r.json()['id']}"
        a, d = await asyncio.gather(
            client.post(f"{path}/accept", headers=merchant.headers), client.post(f"{path}/decline", headers=merchant.headers)
        )
        assert sorted([a.status_code, d.status_code]) == [200, 409], (a.text, d.text)
        loser = a if a.status_code == 409 else d
        assert loser.json()["code"] == "invalid_transition"
        final = (await client.get(path, headers=merchant.headers)).json()
        assert final["state"] == ("active" if a.status_code == 200 else "declined") and final["version"] == 2
        assert loser.json()["state"] == final["state"]  # the answer names the state the winner left
        assert (final["activated_at"] is not None) == (final["state"] == "active")
        history = (await client.get(f"{path}/history", headers=merchant.headers)).json()
        assert [h["action"] for h in history][0] == "create" and len(history) == 2


async def _ask(client, w, voucher, amount, use):
    r = await client.post(
        f"/v1/vouchers/{voucher['id']}/redemptions",
        headers=w.provider.headers,
        json={"merchant_id": w.m[0].id, "amount_fen": amount, "use_date": str(use)},
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _feed(client, user) -> list[dict]:
    events, cursor = [], None
    while True:
        page = (
            await client.get("/v1/events", headers=user.headers, params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        ).json()
        events += page["items"]
        cursor = page["next_cursor"]  # the feed never dead-ends: has_more says when it is read
        if not page["has_more"]:
            return events


async def _remaining(client, w, voucher) -> dict:
    listed = (await client.get("/v1/vouchers", headers=w.provider.headers)).json()["items"]
    return next(v for v in listed if v["id"] == voucher["id"])


@postgres_only
async def test_racing_decisions_on_one_redemption_take_effect_once(committed_client, committed_factory):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    voucher = w.v2  # 1,300,000 fen
    reserved = 0
    for pair in (("reject", "reject"), ("approve", "reject"), ("approve", "approve")):
        red = await _ask(client, w, voucher, 1_000, use)
        path = f"/v1/redemptions/{red['id']}"
        answers = await asyncio.gather(
            *(
                client.post(f"{path}/{action}", headers=w.op.headers, json={"reason": "r"} if action == "reject" else None)
                for action in pair
            )
        )
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        final = (await client.get(path, headers=w.op.headers)).json()
        winner = next(a for a in answers if a.status_code == 200).json()
        assert final["state"] == winner["state"] and final["version"] == 2
        assert len([e for e in await _feed(client, w.op) if e["data"].get("id") == red["id"]]) == 2  # + a decision
        reserved += 0 if final["state"] == "rejected" else 1_000
        # a rejection returns the amount once, however many were sent
        assert (await _remaining(client, w, voucher))["remaining_fen"] == 1_300_000 - reserved


@postgres_only
async def test_concurrent_fulfilments_use_the_voucher_up(committed_client, committed_factory):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    voucher = w.v1  # 12,345 fen
    parts = [await _ask(client, w, voucher, amount, use) for amount in (2_000, 2_000, 2_000, 2_000, 2_000, 2_345)]
    for red in parts:
        assert (await client.post(f"/v1/redemptions/{red['id']}/approve", headers=w.op.headers)).status_code == 200
    answers = await asyncio.gather(*(client.post(f"/v1/redemptions/{red['id']}/fulfil", headers=w.op.headers) for red in parts))
    assert [a.status_code for a in answers] == [200] * len(parts), [a.text for a in answers]
    v = await _remaining(client, w, voucher)
    assert v["state"] == "used_up" and v["remaining_fen"] == 0  # whichever came last saw the others redeemed


@postgres_only
async def test_racing_publications_issue_the_vouchers_once(committed_client, committed_factory):
    client = committed_client
    w = await build_world(client, committed_factory)
    await advance_to(committed_factory, local(add_months(w.month, 1), 1, 1))
    assert (await compute(client, w)).status_code == 200
    answers = await asyncio.gather(publish(client, w), publish(client, w), compute(client, w))
    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 200, 409], [200, 409, 409]), [a.text for a in answers]
    published = [a for a in answers if a.status_code == 200 and a.json()["vouchers"]]
    assert len(published) == 1 and published[0].json()["vouchers"] == 2
    assert all(a.json()["code"] == "month_published" for a in answers if a.status_code == 409)
    assert len(await vouchers(client, w.op)) == 2
