"""Racing redemptions on PostgreSQL with real connections: the voucher row is locked while the
amount is reserved, so two requests exceeding the balance together never both succeed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.conftest import postgres_only
from tests.test_incentives import SH, published_world


@postgres_only
async def test_concurrent_redemptions_never_exceed_the_balance(committed_client, committed_factory):
    client = committed_client
    w = await published_world(client, committed_factory)
    use = ((await committed_factory.now()) + timedelta(days=10)).astimezone(SH).date()
    voucher = w.v1  # 12,345 fen, bound to m1

    async def ask(amount: int):
        return await client.post(f"/v1/vouchers/{voucher['id']}/redemptions", headers=w.provider.headers,
                                 json={"merchant_id": w.m[0].id, "amount_fen": amount, "use_date": str(use)})

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
    answers = await asyncio.gather(*(committed_client.post(
        "/v1/provider-contracts", headers=provider.headers,
        json={"merchant_id": merchant.id, "mode": "service_fee"}) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    listed = (await committed_client.get("/v1/provider-contracts", headers=provider.headers)).json()
    assert len(listed["items"]) == 1
