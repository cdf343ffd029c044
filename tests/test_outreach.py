"""Outreach (精选联盟建联) through HTTP: pair rules, conversations and messages, contact views,
weekly quotas, tiers, week rollover and the quota policy."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from app.core.clock import local_date, local_midnight, week_start
from tests.conftest import Factory, User


def next_monday(moment: datetime) -> datetime:
    return local_midnight(local_date(week_start(moment)) + timedelta(days=7))


async def advance_to_next_week(factory: Factory, plus_seconds: int = 1) -> datetime:
    now = await factory.now()
    await factory.advance(math.ceil((next_monday(now) - now).total_seconds()) + plus_seconds)
    return await factory.now()


async def open_conv(client, who: User, other: User):
    return await client.post("/v1/conversations", headers=who.headers, json={"counterpart_id": other.id})


async def quotas(client, who: User) -> dict:
    r = await client.get("/v1/quotas/me", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()


def item(body: dict, kind: str, counterpart_role: str) -> dict:
    [found] = [i for i in body["items"] if i["kind"] == kind and i["counterpart_role"] == counterpart_role]
    return found


SMALL_POLICY = {
    "merchant_tiers": [
        {"min_last_week_gmv_fen": 0, "conversations": 2, "contact_views": 1},
        {"min_last_week_gmv_fen": 500, "conversations": 3, "contact_views": 2},
    ],
    "creator_tiers": [{"min_level": 0, "conversations": 2}, {"min_level": 5, "conversations": 4}],
    "fixed": {"agency_to_creator": 1, "group_leader_to_creator": 1, "group_leader_to_merchant": 1},
}


async def put_policy(client, factory: Factory, policy: dict) -> dict:
    op = await factory.operator()
    r = await client.put("/v1/admin/quota-policy", headers=op.headers, json=policy)
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------------------------
# Pair rules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opener,counterpart",
    [
        ("merchant", "creator"),
        ("creator", "merchant"),
        ("agency", "creator"),
        ("group_leader", "creator"),
        ("group_leader", "merchant"),
    ],
)
async def test_open_pairs_create_and_count(client, factory: Factory, opener, counterpart):
    a = await factory.user(opener)
    b = await factory.user(counterpart)
    r = await open_conv(client, a, b)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["opener_id"] == a.id and sorted(body["participant_ids"]) == sorted([a.id, b.id])
    assert body["counterpart"] == {"id": b.id, "role": counterpart, "display_name": b.username}
    assert body["unread_count"] == 0 and body["message_count"] == 0
    assert item(await quotas(client, a), "conversations", counterpart)["used"] == 1


@pytest.mark.parametrize(
    "opener,counterpart",
    [
        ("merchant", "merchant"),
        ("creator", "creator"),
        ("agency", "merchant"),
        ("creator", "agency"),
        ("creator", "group_leader"),
        ("merchant", "group_leader"),
        ("service_provider", "creator"),
        ("operator", "creator"),
        ("agency", "agency"),
        ("group_leader", "group_leader"),
    ],
)
async def test_closed_pairs_are_pair_not_open(client, factory: Factory, opener, counterpart):
    a = await factory.operator() if opener == "operator" else await factory.user(opener)
    b = await factory.user(counterpart)
    r = await open_conv(client, a, b)
    assert r.status_code == 403 and r.json()["code"] == "pair_not_open"
    assert r.headers["content-type"] == "application/problem+json"


async def test_merchant_must_be_alliance_member(client, factory: Factory):
    outsider = await factory.user("merchant", alliance_member=False)
    creator = await factory.user("creator")
    r = await open_conv(client, outsider, creator)
    assert r.status_code == 403 and r.json()["code"] == "alliance_membership_required"
    # a creator may still reach that merchant
    assert (await open_conv(client, creator, outsider)).status_code == 201


async def test_self_and_unknown_counterparts(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await open_conv(client, merchant, merchant)
    assert r.status_code == 403 and r.json()["code"] == "pair_not_open"
    r = await client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": "acc_nobody"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": "x", "y": 1})
    assert r.status_code == 422
    r = await client.post("/v1/conversations", json={"counterpart_id": "x"})
    assert r.status_code == 401


async def test_existing_conversation_is_answered_without_counting(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    first = await open_conv(client, merchant, creator)
    assert first.status_code == 201
    again = await open_conv(client, merchant, creator)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # the other side clicking "contact" finds the same conversation, also uncounted
    back = await open_conv(client, creator, merchant)
    assert back.status_code == 200 and back.json()["id"] == first.json()["id"]
    assert back.json()["counterpart"]["id"] == merchant.id
    assert item(await quotas(client, merchant), "conversations", "creator")["used"] == 1
    assert item(await quotas(client, creator), "conversations", "merchant")["used"] == 0


async def test_existing_conversation_of_a_closed_direction_is_still_answered(client, factory: Factory):
    leader = await factory.user("group_leader")
    creator = await factory.user("creator")
    created = await open_conv(client, leader, creator)
    assert created.status_code == 201
    # creator -> group_leader is not an open pair, but the conversation exists
    r = await open_conv(client, creator, leader)
    assert r.status_code == 200 and r.json()["id"] == created.json()["id"]


# --------------------------------------------------------------------------------------------
# Messages and listing
# --------------------------------------------------------------------------------------------


async def test_messages_unread_counts_and_order(client, factory: Factory):
    merchant = await factory.user("merchant")
    c1 = await factory.user("creator")
    c2 = await factory.user("creator")
    conv1 = (await open_conv(client, merchant, c1)).json()
    conv2 = (await open_conv(client, merchant, c2)).json()
    await factory.advance(5)
    # c1 writes twice; the merchant has two unread there
    for text in ("你好", "合作吗?"):
        r = await client.post(f"/v1/conversations/{conv1['id']}/messages", headers=c1.headers, json={"text": text})
        assert r.status_code == 201, r.text
        assert r.json()["sender_id"] == c1.id
    listed = (await client.get("/v1/conversations", headers=merchant.headers)).json()
    assert [c["id"] for c in listed["items"]] == [conv1["id"], conv2["id"]]
    assert [c["unread_count"] for c in listed["items"]] == [2, 0]
    assert listed["items"][0]["message_count"] == 2 and listed["items"][0]["last_message_at"]
    # the writer has nothing unread
    mine = (await client.get("/v1/conversations", headers=c1.headers)).json()
    assert mine["items"][0]["unread_count"] == 0 and mine["items"][0]["counterpart"]["id"] == merchant.id
    # later activity in conv2 moves it first
    await factory.advance(5)
    await client.post(f"/v1/conversations/{conv2['id']}/messages", headers=merchant.headers, json={"text": "hi"})
    listed = (await client.get("/v1/conversations", headers=merchant.headers)).json()
    assert [c["id"] for c in listed["items"]] == [conv2["id"], conv1["id"]]
    # listing the messages marks them read
    msgs = (await client.get(f"/v1/conversations/{conv1['id']}/messages", headers=merchant.headers)).json()
    assert [m["text"] for m in msgs["items"]] == ["合作吗?", "你好"] and msgs["next_cursor"] is None
    listed = (await client.get("/v1/conversations", headers=merchant.headers)).json()
    assert {c["id"]: c["unread_count"] for c in listed["items"]} == {conv1["id"]: 0, conv2["id"]: 0}
    # c2 has the merchant's message unread until it reads
    theirs = (await client.get("/v1/conversations", headers=c2.headers)).json()
    assert theirs["items"][0]["unread_count"] == 1
    # a reply marks the conversation read for the replier
    await client.post(f"/v1/conversations/{conv2['id']}/messages", headers=c2.headers, json={"text": "好的"})
    theirs = (await client.get("/v1/conversations", headers=c2.headers)).json()
    assert theirs["items"][0]["unread_count"] == 0
    # the opener's own create-answer and the other's reopen show the unread count too
    again = (await open_conv(client, merchant, c2)).json()
    assert again["unread_count"] == 1


async def test_only_participants_see_a_conversation(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    stranger = await factory.user("merchant")
    conv = (await open_conv(client, merchant, creator)).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    assert (await client.post(url, headers=creator.headers, json={"text": "hello"})).status_code == 201
    r = await client.get(url, headers=stranger.headers)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post(url, headers=stranger.headers, json={"text": "spam"})
    assert r.status_code == 404
    assert (await client.get("/v1/conversations", headers=stranger.headers)).json()["items"] == []
    r = await client.get("/v1/conversations/cnv_missing/messages", headers=merchant.headers)
    assert r.status_code == 404


async def test_message_validation(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    conv = (await open_conv(client, merchant, creator)).json()
    url = f"/v1/conversations/{conv['id']}/messages"
    for bad in ({"text": ""}, {"text": "x" * 2001}, {"text": "   "}, {}, {"text": "ok", "extra": 1}):
        r = await client.post(url, headers=merchant.headers, json=bad)
        assert r.status_code == 422, bad
        assert r.json()["code"] == "validation_failed"
    assert (await client.post(url, headers=merchant.headers, json={"text": "x" * 2000})).status_code == 201
    r = await client.get(url, headers=merchant.headers, params={"cursor": "!!!"})
    assert r.status_code == 422
    r = await client.get("/v1/conversations", headers=merchant.headers, params={"cursor": "bm90LWEtbGlzdA"})
    assert r.status_code == 422


async def test_pagination_of_conversations_and_messages(client, factory: Factory):
    leader = await factory.user("group_leader")
    creators = [await factory.user("creator") for _ in range(5)]
    opened = []
    for c in creators:
        opened.append((await open_conv(client, leader, c)).json()["id"])
        await factory.advance(1)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/conversations", headers=leader.headers, params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(opened))
    url = f"/v1/conversations/{opened[0]}/messages"
    for i in range(5):
        await client.post(url, headers=leader.headers, json={"text": f"m{i}"})
    texts, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, headers=creators[0].headers, params=params)).json()
        texts += [m["text"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert texts == ["m4", "m3", "m2", "m1", "m0"]


# --------------------------------------------------------------------------------------------
# Contact views
# --------------------------------------------------------------------------------------------


async def test_contact_views_reveal_and_count(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator", contact={"phone": "13900001111"})
    url = f"/v1/creators/{creator.id}/contact-views"
    r = await client.post(url, headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 200 and r.json() == {"field": "phone", "value": "13900001111"}
    # every view counts (the source counts clicks)
    r = await client.post(url, headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 200
    # never filled: 404 and not counted
    r = await client.post(url, headers=merchant.headers, json={"field": "wechat"})
    assert r.status_code == 404 and r.json()["code"] == "contact_not_provided"
    views = item(await quotas(client, merchant), "contact_views", "creator")
    assert views["used"] == 2 and views["limit"] == 10 and views["remaining"] == 8
    # the conversation quota is a separate counter
    assert item(await quotas(client, merchant), "conversations", "creator")["used"] == 0


async def test_contact_views_exhaust_and_reveal_nothing(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    url = f"/v1/creators/{creator.id}/contact-views"
    for i in range(10):
        r = await client.post(url, headers=merchant.headers, json={"field": "wechat" if i % 2 else "phone"})
        assert r.status_code == 200, r.text
    r = await client.post(url, headers=merchant.headers, json={"field": "wechat"})
    assert r.status_code == 429 and r.json()["code"] == "quota_exhausted"
    assert "wx_creator" not in r.text and "13800138000" not in r.text
    now = await factory.now()
    expected = (next_monday(now) - now).total_seconds()
    assert abs(int(r.headers["Retry-After"]) - expected) <= 3
    assert item(await quotas(client, merchant), "contact_views", "creator")["used"] == 10


async def test_contact_view_access_rules(client, factory: Factory):
    outsider = await factory.user("merchant", alliance_member=False)
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    agency = await factory.user("agency")
    url = f"/v1/creators/{creator.id}/contact-views"
    r = await client.post(url, headers=outsider.headers, json={"field": "phone"})
    assert r.status_code == 403 and r.json()["code"] == "alliance_membership_required"
    r = await client.post(url, headers=agency.headers, json={"field": "phone"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = await client.post(url, headers=creator.headers, json={"field": "phone"})
    assert r.status_code == 403
    r = await client.post(f"/v1/creators/{merchant.id}/contact-views", headers=merchant.headers, json={"field": "phone"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.post(url, headers=merchant.headers, json={"field": "email"})
    assert r.status_code == 422
    assert item(await quotas(client, merchant), "contact_views", "creator")["used"] == 0


# --------------------------------------------------------------------------------------------
# Tiers
# --------------------------------------------------------------------------------------------


async def push_orders(client, factory: Factory, merchant: User, orders: list[tuple[int, str, datetime]]):
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10})
    ).json()
    platform = getattr(factory, "_platform", None) or await factory.user("platform")
    factory._platform = platform  # type: ignore[attr-defined]
    body = {
        "orders": [
            {
                "external_id": f"{merchant.id}-{i}",
                "shop_id": merchant.id,
                "product_id": product["id"],
                "channel": "live",
                "amount_fen": amount,
                "status": status,
                "paid_at": at.isoformat(),
            }
            for i, (amount, status, at) in enumerate(orders)
        ]
    }
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "gmv_fen,conversations,views",
    [
        (0, 20, 10),
        (999_999, 20, 10),
        (1_000_000, 50, 30),
        (9_999_999, 50, 30),
        (10_000_000, 100, 60),
        (99_999_999, 100, 60),
        (100_000_000, 200, 100),
        (500_000_000, 200, 100),
    ],
)
async def test_merchant_tier_boundaries(client, factory: Factory, gmv_fen, conversations, views):
    merchant = await factory.user("merchant")
    this_week = week_start(await factory.now())
    last_week = this_week - timedelta(days=7)
    if gmv_fen:
        await push_orders(
            client,
            factory,
            merchant,
            [
                (gmv_fen, "paid", last_week + timedelta(hours=30)),
                # outside last week: the week before and this week do not count
                (777_777_777, "paid", last_week - timedelta(seconds=1)),
                (888_888_888, "paid", this_week),
            ],
        )
    body = await quotas(client, merchant)
    conv = item(body, "conversations", "creator")
    assert (conv["limit"], item(body, "contact_views", "creator")["limit"]) == (conversations, views)
    assert conv["basis"]["type"] == "last_week_gmv" and conv["basis"]["last_week_gmv_fen"] == gmv_fen


async def test_gmv_is_paid_minus_refunded_of_last_week_only(client, factory: Factory):
    merchant = await factory.user("merchant")
    now = await factory.now()
    this_week = week_start(now)
    last_week = this_week - timedelta(days=7)
    orders = [
        (600_000, "paid", last_week),  # first instant of last week: counts
        (399_999, "paid", this_week - timedelta(seconds=1)),  # last second of last week: counts
        (700_000, "paid", last_week + timedelta(days=2)),  # paid, then refunded below: counts 0
        (5_000_000, "paid", this_week),  # this week: not yet
    ]
    await push_orders(client, factory, merchant, orders)
    orders[2] = (700_000, "refunded", orders[2][2])
    await push_orders(client, factory, merchant, orders)  # the same external ids: order 2 is refunded
    body = await quotas(client, merchant)
    conv = item(body, "conversations", "creator")
    assert conv["basis"]["last_week_gmv_fen"] == 999_999 and conv["limit"] == 20


@pytest.mark.parametrize("level,limit", [(0, 20), (1, 20), (2, 50), (3, 50), (4, 100), (5, 100), (6, 200), (7, 200)])
async def test_creator_level_tiers(client, factory: Factory, level, limit):
    creator = await factory.user("creator", level=level)
    conv = item(await quotas(client, creator), "conversations", "merchant")
    assert conv["limit"] == limit and conv["basis"] == {
        "type": "level",
        "level": level,
        "last_week_gmv_fen": None,
        "policy_effective_from": None,
    }


async def test_fixed_limits_and_roles_without_quotas(client, factory: Factory):
    agency = await factory.user("agency")
    leader = await factory.user("group_leader")
    provider = await factory.user("service_provider")
    a = await quotas(client, agency)
    assert [(i["kind"], i["counterpart_role"], i["limit"]) for i in a["items"]] == [("conversations", "creator", 200)]
    assert a["items"][0]["basis"]["type"] == "fixed"
    g = await quotas(client, leader)
    assert {(i["counterpart_role"], i["limit"]) for i in g["items"]} == {("creator", 500), ("merchant", 500)}
    assert (await quotas(client, provider))["items"] == []
    week = datetime.fromisoformat(a["week_start"])
    assert week == week_start(await factory.now())
    assert datetime.fromisoformat(a["resets_at"]) == week + timedelta(days=7)
    # week_start is Monday 00:00 in Asia/Shanghai
    from app.core.clock import SHANGHAI

    local = week.astimezone(SHANGHAI)
    assert (local.weekday(), local.hour, local.minute) == (0, 0, 0)


async def test_group_leader_counters_are_separate(client, factory: Factory):
    await put_policy(client, factory, SMALL_POLICY)
    await advance_to_next_week(factory)
    leader = await factory.user("group_leader")
    c1, c2 = await factory.user("creator"), await factory.user("creator")
    m1 = await factory.user("merchant")
    assert (await open_conv(client, leader, c1)).status_code == 201
    r = await open_conv(client, leader, c2)
    assert r.status_code == 429 and r.json()["code"] == "quota_exhausted"
    assert r.json()["counterpart_role"] == "creator"
    assert (await open_conv(client, leader, m1)).status_code == 201
    agency = await factory.user("agency")
    assert (await open_conv(client, agency, c1)).status_code == 201
    assert (await open_conv(client, agency, c2)).status_code == 429


# --------------------------------------------------------------------------------------------
# Weeks, snapshots and the policy
# --------------------------------------------------------------------------------------------


async def test_level_is_fixed_for_the_week(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator", level=1)
    assert item(await quotas(client, creator), "conversations", "merchant")["limit"] == 20
    r = await client.patch(f"/v1/accounts/{creator.id}", headers=op.headers, json={"profile": {"level": 6}})
    assert r.status_code == 200
    assert item(await quotas(client, creator), "conversations", "merchant")["limit"] == 20
    await advance_to_next_week(factory)
    conv = item(await quotas(client, creator), "conversations", "merchant")
    assert conv["limit"] == 200 and conv["basis"]["level"] == 6 and conv["used"] == 0


async def test_merchant_tier_follows_last_week_gmv_after_rollover(client, factory: Factory):
    merchant = await factory.user("merchant")
    now = await factory.now()
    assert item(await quotas(client, merchant), "conversations", "creator")["limit"] == 20
    # sales this week lift next week's tier, not this one's
    await push_orders(client, factory, merchant, [(10_000_000, "paid", now)])
    assert item(await quotas(client, merchant), "conversations", "creator")["limit"] == 20
    await advance_to_next_week(factory)
    body = await quotas(client, merchant)
    assert item(body, "conversations", "creator")["limit"] == 100
    assert item(body, "contact_views", "creator")["limit"] == 60
    # and the week after, with no sales, it falls back
    await advance_to_next_week(factory)
    assert item(await quotas(client, merchant), "conversations", "creator")["limit"] == 20


async def test_exhaustion_retry_after_and_rollover(client, factory: Factory):
    policy = await put_policy(client, factory, SMALL_POLICY)
    assert policy["effective_from"] is None and policy["creator_tiers"][0]["conversations"] == 20
    creator = await factory.user("creator", level=0)
    merchants = [await factory.user("merchant") for _ in range(4)]
    # this week still runs on the old (default) policy
    assert item(await quotas(client, creator), "conversations", "merchant")["limit"] == 20
    start = await advance_to_next_week(factory)
    body = await quotas(client, creator)
    conv = item(body, "conversations", "merchant")
    assert conv["limit"] == 2 and conv["used"] == 0
    assert conv["basis"]["policy_effective_from"] is not None
    assert datetime.fromisoformat(body["week_start"]) == week_start(start)
    assert (await open_conv(client, creator, merchants[0])).status_code == 201
    assert (await open_conv(client, creator, merchants[1])).status_code == 201
    r = await open_conv(client, creator, merchants[2])
    assert r.status_code == 429 and r.json()["code"] == "quota_exhausted"
    assert r.headers["content-type"] == "application/problem+json"
    now = await factory.now()
    assert abs(int(r.headers["Retry-After"]) - (next_monday(now) - now).total_seconds()) <= 3
    # nothing was created: the merchant sees no conversation, the creator has two
    assert (await client.get("/v1/conversations", headers=merchants[2].headers)).json()["items"] == []
    assert len((await client.get("/v1/conversations", headers=creator.headers)).json()["items"]) == 2
    # reopening an existing pair is still fine when exhausted
    assert (await open_conv(client, creator, merchants[0])).status_code == 200
    conv = item(await quotas(client, creator), "conversations", "merchant")
    assert (conv["used"], conv["remaining"]) == (2, 0)
    # Sunday 23:59:00 Asia/Shanghai: one minute left
    now = await factory.now()
    await factory.advance(math.floor((next_monday(now) - now).total_seconds()) - 60)
    r = await open_conv(client, creator, merchants[2])
    assert r.status_code == 429 and 57 <= int(r.headers["Retry-After"]) <= 61
    assert r.json()["retry_after"] == int(r.headers["Retry-After"])
    # Monday 00:00 Asia/Shanghai: the quota resets (unused units never carried over)
    await factory.advance(61)
    body = await quotas(client, creator)
    assert item(body, "conversations", "merchant")["used"] == 0
    assert (await open_conv(client, creator, merchants[2])).status_code == 201
    assert (await open_conv(client, creator, merchants[3])).status_code == 201
    assert (await open_conv(client, creator, merchants[1])).status_code == 200


async def test_policy_get_put_and_next_week(client, factory: Factory):
    op = await factory.operator()
    r = await client.get("/v1/admin/quota-policy", headers=op.headers)
    assert r.status_code == 200
    current = r.json()
    assert current["effective_from"] is None and current["scheduled"] is None
    assert current["merchant_tiers"] == [
        {"min_last_week_gmv_fen": 0, "conversations": 20, "contact_views": 10},
        {"min_last_week_gmv_fen": 1_000_000, "conversations": 50, "contact_views": 30},
        {"min_last_week_gmv_fen": 10_000_000, "conversations": 100, "contact_views": 60},
        {"min_last_week_gmv_fen": 100_000_000, "conversations": 200, "contact_views": 100},
    ]
    assert current["creator_tiers"] == [
        {"min_level": 0, "conversations": 20},
        {"min_level": 2, "conversations": 50},
        {"min_level": 4, "conversations": 100},
        {"min_level": 6, "conversations": 200},
    ]
    assert current["fixed"] == {"agency_to_creator": 200, "group_leader_to_creator": 500, "group_leader_to_merchant": 500}
    body = await put_policy(client, factory, SMALL_POLICY)
    now = await factory.now()
    assert body["scheduled"]["creator_tiers"] == SMALL_POLICY["creator_tiers"]
    assert datetime.fromisoformat(body["scheduled"]["effective_from"]) == next_monday(now)
    # a second change in the same week replaces the scheduled one
    changed = {**SMALL_POLICY, "fixed": {"agency_to_creator": 7, "group_leader_to_creator": 8, "group_leader_to_merchant": 9}}
    body = await put_policy(client, factory, changed)
    assert body["scheduled"]["fixed"]["agency_to_creator"] == 7 and body["fixed"]["agency_to_creator"] == 200
    agency = await factory.user("agency")
    assert item(await quotas(client, agency), "conversations", "creator")["limit"] == 200
    await advance_to_next_week(factory)
    got = (await client.get("/v1/admin/quota-policy", headers=op.headers)).json()
    assert got["fixed"]["agency_to_creator"] == 7 and got["scheduled"] is None
    assert datetime.fromisoformat(got["effective_from"]) == week_start(await factory.now())
    assert item(await quotas(client, agency), "conversations", "creator")["limit"] == 7
    # a merchant tier by the new policy: GMV 500 fen last week -> second tier
    merchant = await factory.user("merchant")
    await push_orders(client, factory, merchant, [(500, "paid", week_start(await factory.now()) - timedelta(hours=1))])
    body = await quotas(client, merchant)
    assert item(body, "conversations", "creator")["limit"] == 3 and item(body, "contact_views", "creator")["limit"] == 2


@pytest.mark.parametrize(
    "patch,loc_hint",
    [
        ({"merchant_tiers": [{"min_last_week_gmv_fen": 5, "conversations": 1, "contact_views": 1}]}, "merchant_tiers"),
        ({"creator_tiers": [{"min_level": 0, "conversations": 1}, {"min_level": 0, "conversations": 2}]}, "creator_tiers"),
        (
            {
                "creator_tiers": [
                    {"min_level": 0, "conversations": 1},
                    {"min_level": 4, "conversations": 2},
                    {"min_level": 3, "conversations": 2},
                ]
            },
            "creator_tiers",
        ),
        ({"creator_tiers": []}, "creator_tiers"),
        ({"creator_tiers": [{"min_level": 0, "conversations": -1}]}, "conversations"),
        ({"creator_tiers": [{"min_level": 8, "conversations": 1}]}, "min_level"),
        ({"fixed": {"agency_to_creator": 1}}, "fixed"),
        ({"extra": True}, "extra"),
    ],
)
async def test_policy_validation(client, factory: Factory, patch, loc_hint):
    op = await factory.operator()
    r = await client.put("/v1/admin/quota-policy", headers=op.headers, json={**SMALL_POLICY, **patch})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    assert loc_hint in r.text
    assert (await client.get("/v1/admin/quota-policy", headers=op.headers)).json()["scheduled"] is None


async def test_policy_is_for_operators(client, factory: Factory):
    merchant = await factory.user("merchant")
    assert (await client.get("/v1/admin/quota-policy", headers=merchant.headers)).status_code == 403
    r = await client.put("/v1/admin/quota-policy", headers=merchant.headers, json=SMALL_POLICY)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_idempotent_open_replays(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    headers = {**merchant.headers, "Idempotency-Key": "open-1"}
    first = await client.post("/v1/conversations", headers=headers, json={"counterpart_id": creator.id})
    second = await client.post("/v1/conversations", headers=headers, json={"counterpart_id": creator.id})
    assert first.status_code == second.status_code == 201
    assert second.headers.get("Idempotent-Replayed") == "true" and second.json()["id"] == first.json()["id"]
    assert item(await quotas(client, merchant), "conversations", "creator")["used"] == 1


async def test_lost_insert_race_answers_the_existing_conversation(client, factory: Factory, monkeypatch):
    """When the pre-check misses a conversation another request just created, the unique pair
    constraint turns the insert into a 200 with that conversation, and nothing is counted."""
    from app.domain.outreach import conversations as outreach

    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    first = await open_conv(client, merchant, creator)
    assert first.status_code == 201
    real = outreach._find_pair
    calls = {"n": 0}

    async def blind_first_lookup(session, a, b):
        calls["n"] += 1
        return None if calls["n"] == 1 else await real(session, a, b)

    monkeypatch.setattr(outreach, "_find_pair", blind_first_lookup)
    r = await open_conv(client, creator, merchant)
    assert r.status_code == 200 and r.json()["id"] == first.json()["id"] and calls["n"] == 2
    monkeypatch.setattr(outreach, "_find_pair", real)
    assert item(await quotas(client, creator), "conversations", "merchant")["used"] == 0
    assert item(await quotas(client, merchant), "conversations", "creator")["used"] == 1


async def test_counterpart_is_notified_of_a_new_conversation_only(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    conv = (await open_conv(client, merchant, creator)).json()
    await open_conv(client, merchant, creator)
    notes = (await client.get("/v1/notifications", headers=creator.headers)).json()["items"]
    mine = [n for n in notes if n["kind"] == "outreach.conversation_opened"]
    assert len(mine) == 1 and mine[0]["data"]["conversation_id"] == conv["id"]
    assert mine[0]["data"]["opener_id"] == merchant.id


async def test_demo_step_is_idempotent(db):
    from sqlalchemy import select

    from app.db.models.accounts import Account
    from app.db.models.outreach import ConversationMessage
    from app.demo.outreach import demo_step
    from app.domain.accounts import AccountCreate, Profile, create_account

    async with db() as session:
        accounts = {}
        for role, profile in (("merchant", {"shop_name": "S", "alliance_member": True}), ("creator", {"nickname": "C"})):
            accounts[role] = await create_account(
                session,
                AccountCreate(
                    role=role,
                    username=f"demo-{role}",
                    password="password-123",
                    display_name=role,
                    profile=Profile.model_validate(profile),
                ),
            )
        assert len(await demo_step(session, accounts)) == 1
        assert await demo_step(session, accounts) == []
        texts = list(await session.scalars(select(ConversationMessage.text)))
        assert len(texts) == 1
        assert isinstance(await session.get(Account, accounts["merchant"].id), Account)
        await session.rollback()
