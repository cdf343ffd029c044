"""Outreach quotas under real concurrency (PostgreSQL, separate committing connections)."""

from __future__ import annotations

import asyncio
import math

from tests.conftest import Factory, postgres_only
from tests.test_outreach import SMALL_POLICY, item, next_monday

POLICY_3 = {
    **SMALL_POLICY,
    "creator_tiers": [{"min_level": 0, "conversations": 3}],
    "merchant_tiers": [{"min_last_week_gmv_fen": 0, "conversations": 2, "contact_views": 4}],
}


async def _next_week(client, factory: Factory) -> None:
    op = await factory.operator()
    r = await client.put("/v1/admin/quota-policy", headers=op.headers, json=POLICY_3)
    assert r.status_code == 200, r.text
    now = await factory.now()
    await factory.advance(math.ceil((next_monday(now) - now).total_seconds()) + 1)


@postgres_only
async def test_n_parallel_opens_with_r_units_create_exactly_r(committed_client, committed_factory):
    await _next_week(committed_client, committed_factory)
    creator = await committed_factory.user("creator", level=0)
    merchants = [await committed_factory.user("merchant") for _ in range(8)]
    answers = await asyncio.gather(
        *(committed_client.post("/v1/conversations", headers=creator.headers, json={"counterpart_id": m.id}) for m in merchants)
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 3 + [429] * 5, [a.text for a in answers]
    assert all(
        a.json()["code"] == "quota_exhausted" and int(a.headers["Retry-After"]) > 0 for a in answers if a.status_code == 429
    )
    listed = (await committed_client.get("/v1/conversations", headers=creator.headers)).json()["items"]
    assert len(listed) == 3
    quotas = (await committed_client.get("/v1/quotas/me", headers=creator.headers)).json()
    conv = item(quotas, "conversations", "merchant")
    assert (conv["limit"], conv["used"], conv["remaining"]) == (3, 3, 0)


@postgres_only
async def test_parallel_first_use_with_partial_quota_left(committed_client, committed_factory):
    """R=2 left after one sequential use; 6 racing opens (some the very first touch of the row
    by other requests) create exactly 2."""
    await _next_week(committed_client, committed_factory)
    creator = await committed_factory.user("creator", level=0)
    merchants = [await committed_factory.user("merchant") for _ in range(7)]
    first = await committed_client.post("/v1/conversations", headers=creator.headers, json={"counterpart_id": merchants[0].id})
    assert first.status_code == 201
    answers = await asyncio.gather(
        *(
            committed_client.post("/v1/conversations", headers=creator.headers, json={"counterpart_id": m.id})
            for m in merchants[1:]
        )
    )
    assert sorted(a.status_code for a in answers) == [201] * 2 + [429] * 4
    listed = (await committed_client.get("/v1/conversations", headers=creator.headers)).json()["items"]
    assert len(listed) == 3


@postgres_only
async def test_racing_opens_of_one_pair_create_one(committed_client, committed_factory):
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    calls = [(merchant, creator), (creator, merchant)] * 3
    answers = await asyncio.gather(
        *(committed_client.post("/v1/conversations", headers=a.headers, json={"counterpart_id": b.id}) for a, b in calls)
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    used_m = item((await committed_client.get("/v1/quotas/me", headers=merchant.headers)).json(), "conversations", "creator")[
        "used"
    ]
    used_c = item((await committed_client.get("/v1/quotas/me", headers=creator.headers)).json(), "conversations", "merchant")[
        "used"
    ]
    assert used_m + used_c == 1
    for who in (merchant, creator):
        assert len((await committed_client.get("/v1/conversations", headers=who.headers)).json()["items"]) == 1


@postgres_only
async def test_parallel_contact_views_reveal_exactly_the_quota(committed_client, committed_factory):
    await _next_week(committed_client, committed_factory)
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    answers = await asyncio.gather(
        *(
            committed_client.post(f"/v1/creators/{creator.id}/contact-views", headers=merchant.headers, json={"field": "phone"})
            for _ in range(9)
        )
    )
    assert sorted(a.status_code for a in answers) == [200] * 4 + [429] * 5
    assert all("value" not in a.json() for a in answers if a.status_code == 429)
    quotas = (await committed_client.get("/v1/quotas/me", headers=merchant.headers)).json()
    assert item(quotas, "contact_views", "creator")["used"] == 4


@postgres_only
async def test_fifty_parallel_opens_with_ten_units_left_create_exactly_ten(committed_client, committed_factory):
    """The issue's scenario: a merchant at the default first tier (20 a week) has used 10; 50
    simultaneous new conversations create exactly 10."""
    merchant = await committed_factory.user("merchant", alliance_member=True)
    creators = [await committed_factory.user("creator") for _ in range(60)]
    for creator in creators[:10]:
        r = await committed_client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": creator.id})
        assert r.status_code == 201, r.text
    answers = await asyncio.gather(
        *(
            committed_client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": c.id})
            for c in creators[10:]
        )
    )
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 10 and codes.count(429) == 40, codes
    listed = (await committed_client.get("/v1/conversations", headers=merchant.headers, params={"limit": 100})).json()["items"]
    assert len(listed) == 20
    conv = item((await committed_client.get("/v1/quotas/me", headers=merchant.headers)).json(), "conversations", "creator")
    assert (conv["limit"], conv["used"], conv["remaining"]) == (20, 20, 0)


@postgres_only
async def test_racing_messages_take_distinct_seqs(committed_client, committed_factory):
    """Each message takes the conversation's next `seq` in the statement that counts it."""
    merchant = await committed_factory.user("merchant")
    creator = await committed_factory.user("creator")
    conv = (
        await committed_client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": creator.id})
    ).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    answers = await asyncio.gather(
        *(
            committed_client.post(url, headers=who.headers, json={"text": f"m{n}"})
            for n, who in enumerate([merchant, creator] * 4)
        )
    )
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert sorted(a.json()["seq"] for a in answers) == list(range(1, 9))
    sent = [a.json() for a in answers]
    # the messages ran one after the other (the counting UPDATE locks the conversation): the
    # merchant has read up to its own last one
    last_own = max(m["seq"] for m in sent if m["sender_id"] == merchant.id)
    unread = sum(1 for m in sent if m["sender_id"] == creator.id and m["seq"] > last_own)
    listed = (await committed_client.get("/v1/conversations", headers=merchant.headers)).json()["items"]
    assert (listed[0]["message_count"], listed[0]["unread_count"]) == (8, unread)
