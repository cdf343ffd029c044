"""Campaigns (直播间奖励) through HTTP: the two machines (every state × every action), deadlines,
visibility, the stock plan and its export, finding creators, cards and intents."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from tests.conftest import Factory, User

DAY = 86400


def iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass
class World:
    op: User
    campaign: dict
    creator: User
    merchants: list[User]
    products: dict[str, dict] = field(default_factory=dict)  # merchant id -> product


async def make_campaign(client, factory: Factory, *, publish: bool = True, eligible: list[str] = ()) -> dict:
    op = await factory.operator()
    now = await factory.now()
    r = await client.post(
        "/v1/campaigns",
        headers=op.headers,
        json={
            "title": "双11 直播间奖励",
            "description": "流量扶持",
            "signup_deadline": iso(now + timedelta(days=1)),
            "product_deadline": iso(now + timedelta(days=3)),
            "live_from": iso(now + timedelta(days=4)),
            "live_to": iso(now + timedelta(days=6)),
        },
    )
    assert r.status_code == 201, r.text
    campaign = r.json()
    if eligible:
        r = await client.put(
            f"/v1/campaigns/{campaign['id']}/eligible-creators", headers=op.headers, json={"creator_ids": list(eligible)}
        )
        assert r.status_code == 200, r.text
    if publish:
        r = await client.post(f"/v1/campaigns/{campaign['id']}/publish", headers=op.headers)
        assert r.status_code == 200, r.text
        campaign = r.json()
    return campaign


async def world(client, factory: Factory, shops: int = 1) -> World:
    creator = await factory.user("creator", contact={"phone": "13900000001", "wechat": "wx_a"})
    merchants = [await factory.user("merchant") for _ in range(shops)]
    campaign = await make_campaign(client, factory, eligible=[creator.id])
    w = World(await factory.operator(), campaign, creator, merchants)
    for m in merchants:
        r = await client.post(
            "/v1/products", headers=m.headers, json={"title": f"手机 {m.username}", "price_fen": 399900, "inventory": 20}
        )
        w.products[m.id] = r.json()
    return w


async def sign_up(client, w: World, creator: User | None = None, **over) -> dict:
    creator = creator or w.creator
    body = {"shop_ids": [m.id for m in w.merchants], "planned_live_at": w.campaign["live_from"], "note": "hi", **over}
    r = await client.post(f"/v1/campaigns/{w.campaign['id']}/signups", headers=creator.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def act(client, user: User, signup_id: str, action: str, body: dict | None = None):
    return await client.post(
        f"/v1/campaign-signups/{signup_id}/{action}", headers=user.headers, json=body if body is not None else None
    )


def actions_for(w: World) -> dict[str, tuple[User, dict | None]]:
    m = w.merchants[0]
    return {
        "merchant-approve": (m, None),
        "merchant-reject": (m, {"reason": "no stock"}),
        "platform-approve": (w.op, None),
        "platform-reject": (w.op, {"reason": "not a fit"}),
        "grant-traffic": (w.op, {"traffic_units": 1000, "note": "首页推荐"}),
        "submit-products": (w.creator, {"items": [{"product_id": w.products[m.id]["id"], "planned_quantity": 5}]}),
        "merchant-confirm-stock": (m, None),
        "platform-confirm-stock": (w.op, None),
        "withdraw": (w.creator, None),
    }


async def fire(client, w: World, signup_id: str, action: str):
    user, body = actions_for(w)[action]
    return await act(client, user, signup_id, action, body)


PATHS: dict[str, list[str]] = {
    "pending_merchant": [],
    "merchant_rejected": ["merchant-reject"],
    "withdrawn": ["withdraw"],
    "pending_platform": ["merchant-approve"],
    "platform_rejected": ["merchant-approve", "platform-reject"],
    "approved": ["merchant-approve", "platform-approve"],
    "traffic_granted": ["merchant-approve", "platform-approve", "grant-traffic"],
    "products_submitted": ["merchant-approve", "platform-approve", "grant-traffic", "submit-products"],
    "stock_confirmed": ["merchant-approve", "platform-approve", "grant-traffic", "submit-products", "merchant-confirm-stock"],
    "ready": [
        "merchant-approve",
        "platform-approve",
        "grant-traffic",
        "submit-products",
        "merchant-confirm-stock",
        "platform-confirm-stock",
    ],
}


async def reach(client, factory: Factory, state: str) -> tuple[World, dict]:
    w = await world(client, factory)
    signup = await sign_up(client, w)
    base = {"live": "ready", "finished": "ready", "expired": "pending_merchant"}.get(state, state)
    for action in PATHS[base]:
        r = await fire(client, w, signup["id"], action)
        assert r.status_code == 200, (action, r.text)
    if state == "expired":
        await factory.advance(3 * DAY + 60)
    if state in ("live", "finished"):
        platform = await factory.user("platform")
        await factory.advance(4 * DAY + 3600)
        now = await factory.now()
        live = {
            "external_id": f"ls-{signup['id']}",
            "host_id": w.creator.id,
            "started_at": iso(now),
            "peak_viewers": 100,
            "room_url": "https://live.example/r",
        }
        r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=live)
        assert r.status_code == 201, r.text
        if state == "finished":
            r = await client.post(
                "/v1/ingest/live-sessions", headers=platform.headers, json={**live, "ended_at": iso(now + timedelta(hours=2))}
            )
            assert r.status_code == 200, r.text
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
    assert got["state"] == state, got
    return w, got


ALLOWED = {
    ("pending_merchant", "merchant-approve"): "pending_platform",
    ("pending_merchant", "merchant-reject"): "merchant_rejected",
    ("pending_merchant", "withdraw"): "withdrawn",
    ("pending_platform", "platform-approve"): "approved",
    ("pending_platform", "platform-reject"): "platform_rejected",
    ("pending_platform", "withdraw"): "withdrawn",
    ("approved", "grant-traffic"): "traffic_granted",
    ("traffic_granted", "submit-products"): "products_submitted",
    ("products_submitted", "submit-products"): "products_submitted",
    ("products_submitted", "merchant-confirm-stock"): "stock_confirmed",
    ("stock_confirmed", "platform-confirm-stock"): "ready",
}
ALL_STATES = [
    "pending_merchant",
    "pending_platform",
    "merchant_rejected",
    "approved",
    "platform_rejected",
    "traffic_granted",
    "products_submitted",
    "stock_confirmed",
    "ready",
    "live",
    "finished",
    "withdrawn",
    "expired",
]
ACTIONS = [
    "merchant-approve",
    "merchant-reject",
    "platform-approve",
    "platform-reject",
    "grant-traffic",
    "submit-products",
    "merchant-confirm-stock",
    "platform-confirm-stock",
    "withdraw",
]


@pytest.mark.parametrize("state", ALL_STATES)
async def test_signup_every_state_every_action(client, factory: Factory, state):
    w, signup = await reach(client, factory, state)
    allowed = [a for a in ACTIONS if (state, a) in ALLOWED]
    # the party's allowed_actions match the table
    for user in {w.creator.id: w.creator, w.op.id: w.op, w.merchants[0].id: w.merchants[0]}.values():
        got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=user.headers)).json()
        expected = [a for a in allowed if actions_for(w)[a][0].id == user.id]
        assert sorted(got["allowed_actions"]) == sorted(expected), (user.role, got["allowed_actions"])
    for action in ACTIONS:
        if action in allowed:
            continue
        r = await fire(client, w, signup["id"], action)
        assert r.status_code == 409, (state, action, r.text)
        assert r.json()["code"] == "invalid_transition" and r.json()["state"] == state
    for n, action in enumerate(allowed):
        if n:
            w, signup = await reach(client, factory, state)
        r = await fire(client, w, signup["id"], action)
        assert r.status_code == 200, (state, action, r.text)
        assert r.json()["state"] == ALLOWED[(state, action)]
        assert r.json()["version"] > signup["version"]


async def test_signup_history_and_events(client, factory: Factory):
    w, signup = await reach(client, factory, "finished")
    hist = (await client.get(f"/v1/campaign-signups/{signup['id']}/history", headers=w.creator.headers)).json()
    assert [h["action"] for h in hist] == ["create", *PATHS["ready"], "start-live", "end-live"]
    assert hist[-1]["actor_id"] == "system" and hist[-1]["to_state"] == "finished"
    events = (await client.get("/v1/events", headers=w.merchants[0].headers)).json()
    types = {e["type"] for e in events["items"]}
    assert "campaign_signup.merchant_approved" in types and "campaign_signup.live_ended" in types


async def test_wrong_roles_are_403(client, factory: Factory):
    w = await world(client, factory)
    signup = await sign_up(client, w)
    m = w.merchants[0]
    assert (await act(client, m, signup["id"], "platform-approve")).status_code == 403
    assert (await act(client, w.creator, signup["id"], "merchant-approve")).status_code == 403
    assert (await act(client, w.op, signup["id"], "withdraw")).status_code == 403
    assert (await act(client, m, signup["id"], "withdraw")).status_code == 403


async def test_campaign_machine_every_state_every_action(client, factory: Factory):
    op = await factory.operator()
    draft = await make_campaign(client, factory, publish=False)
    assert draft["state"] == "draft" and draft["allowed_actions"] == ["publish"]
    r = await client.post(f"/v1/campaigns/{draft['id']}/close", headers=op.headers)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    r = await client.post(f"/v1/campaigns/{draft['id']}/publish", headers=op.headers)
    assert r.status_code == 200 and r.json()["state"] == "published" and r.json()["allowed_actions"] == ["close"]
    r = await client.post(f"/v1/campaigns/{draft['id']}/publish", headers=op.headers)
    assert r.status_code == 409 and r.json()["allowed_actions"] == ["close"]
    r = await client.post(f"/v1/campaigns/{draft['id']}/close", headers=op.headers, json={"reason": "done"})
    assert r.status_code == 200 and r.json()["state"] == "closed" and r.json()["allowed_actions"] == []
    for action in ("publish", "close"):
        r = await client.post(f"/v1/campaigns/{draft['id']}/{action}", headers=op.headers)
        assert r.status_code == 409 and r.json()["state"] == "closed"
    hist = (await client.get(f"/v1/campaigns/{draft['id']}/history", headers=op.headers)).json()
    assert [(h["from_state"], h["to_state"]) for h in hist] == [(None, "draft"), ("draft", "published"), ("published", "closed")]
    merchant = await factory.user("merchant")
    r = await client.post(f"/v1/campaigns/{draft['id']}/close", headers=merchant.headers)
    assert r.status_code == 403


async def test_campaign_closes_at_live_to(client, factory: Factory):
    op = await factory.operator()
    campaign = await make_campaign(client, factory)
    await factory.advance(6 * DAY + 1)
    got = (await client.get(f"/v1/campaigns/{campaign['id']}", headers=op.headers)).json()
    assert got["state"] == "closed"
    hist = (await client.get(f"/v1/campaigns/{campaign['id']}/history", headers=op.headers)).json()
    assert hist[-1]["actor_role"] == "system" and hist[-1]["action"] == "close"
    # a draft past its window cannot be published
    draft = await make_campaign(client, factory, publish=False)
    await factory.advance(6 * DAY + 1)
    r = await client.post(f"/v1/campaigns/{draft['id']}/publish", headers=op.headers)
    assert r.status_code == 409 and r.json()["code"] == "deadline_passed"


async def test_campaign_validation(client, factory: Factory):
    op = await factory.operator()
    now = await factory.now()
    good = {
        "title": "t",
        "signup_deadline": iso(now + timedelta(days=1)),
        "product_deadline": iso(now + timedelta(days=2)),
        "live_from": iso(now + timedelta(days=2)),
        "live_to": iso(now + timedelta(days=3)),
    }
    assert (await client.post("/v1/campaigns", headers=op.headers, json=good)).status_code == 201
    for bad, loc in [
        ({"signup_deadline": iso(now + timedelta(days=2, hours=1))}, "product_deadline"),
        ({"live_from": iso(now + timedelta(days=1))}, "live_from"),
        ({"live_to": iso(now + timedelta(days=2))}, "live_to"),
        ({"live_to": "2026-01-01T00:00:00"}, "live_to"),
    ]:
        r = await client.post("/v1/campaigns", headers=op.headers, json={**good, **bad})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"][-1] == loc
    r = await client.post("/v1/campaigns", headers=op.headers, json={**good, "extra": 1})
    assert r.status_code == 422
    merchant = await factory.user("merchant")
    assert (await client.post("/v1/campaigns", headers=merchant.headers, json=good)).status_code == 403


async def test_campaign_visibility_and_can_sign_up(client, factory: Factory):
    op = await factory.operator()
    eligible = await factory.user("creator")
    other = await factory.user("creator")
    merchant = await factory.user("merchant")
    agency = await factory.user("agency")
    draft = await make_campaign(client, factory, publish=False, eligible=[eligible.id])
    published = await make_campaign(client, factory, eligible=[eligible.id])
    for user in (eligible, merchant):
        assert (await client.get(f"/v1/campaigns/{draft['id']}", headers=user.headers)).status_code == 404
        ids = [c["id"] for c in (await client.get("/v1/campaigns", headers=user.headers)).json()["items"]]
        assert published["id"] in ids and draft["id"] not in ids
    ops_ids = [c["id"] for c in (await client.get("/v1/campaigns", headers=op.headers)).json()["items"]]
    assert {draft["id"], published["id"]} <= set(ops_ids)
    assert (await client.get("/v1/campaigns", headers=agency.headers)).status_code == 403
    get = lambda u: client.get(f"/v1/campaigns/{published['id']}", headers=u.headers)  # noqa: E731
    assert (await get(eligible)).json()["can_sign_up"] is True
    assert (await get(other)).json()["can_sign_up"] is False
    assert (await get(merchant)).json()["can_sign_up"] is None
    listed = (await client.get("/v1/campaigns", headers=eligible.headers, params={"state": "published"})).json()
    assert next(c for c in listed["items"] if c["id"] == published["id"])["can_sign_up"] is True
    await factory.advance(DAY + 1)
    assert (await get(eligible)).json()["can_sign_up"] is False


async def test_eligible_creators(client, factory: Factory):
    op = await factory.operator()
    a = await factory.user("creator")
    b = await factory.user("creator")
    merchant = await factory.user("merchant")
    campaign = await make_campaign(client, factory)
    url = f"/v1/campaigns/{campaign['id']}/eligible-creators"
    r = await client.put(url, headers=op.headers, json={"creator_ids": [a.id, b.id, a.id]})
    assert r.status_code == 200 and r.json()["creator_ids"] == sorted([a.id, b.id])
    r = await client.put(url, headers=op.headers, json={"creator_ids": [b.id]})
    assert (await client.get(url, headers=op.headers)).json()["creator_ids"] == [b.id]
    r = await client.put(url, headers=op.headers, json={"creator_ids": [b.id, merchant.id]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "creator_ids", 1]
    assert (await client.get(url, headers=merchant.headers)).status_code == 403
    assert (await client.get("/v1/campaigns/cmp_nope/eligible-creators", headers=op.headers)).status_code == 404


async def test_signup_rules(client, factory: Factory):
    w = await world(client, factory, shops=2)
    cid = w.campaign["id"]
    outsider = await factory.user("creator")
    body = {"shop_ids": [w.merchants[0].id], "planned_live_at": w.campaign["live_from"]}
    r = await client.post(f"/v1/campaigns/{cid}/signups", headers=outsider.headers, json=body)
    assert r.status_code == 403 and r.json()["code"] == "not_eligible"
    for bad in (
        {"shop_ids": []},
        {"shop_ids": [w.merchants[0].id] * 2},
        {"shop_ids": [w.creator.id]},
        {"shop_ids": [f"acc_{i}" for i in range(6)]},
        {"planned_live_at": w.campaign["live_to"]},
        {"planned_live_at": w.campaign["signup_deadline"]},
    ):
        r = await client.post(f"/v1/campaigns/{cid}/signups", headers=w.creator.headers, json={**body, **bad})
        assert r.status_code == 422, (bad, r.text)
    first = await sign_up(client, w)
    assert first["contact"] == {"phone": "13900000001", "wechat": "wx_a"}
    assert [s["decision"] for s in first["shops"]] == ["pending", "pending"]
    r = await client.post(f"/v1/campaigns/{cid}/signups", headers=w.creator.headers, json=body)
    assert r.status_code == 409 and r.json()["code"] == "duplicate_signup"
    # another planned time is another signup; a withdrawn one frees its slot
    later = (datetime.fromisoformat(w.campaign["live_from"]) + timedelta(hours=5)).isoformat()
    second = await sign_up(client, w, planned_live_at=later, contact={"phone": "13911112222"})
    assert second["contact"] == {"phone": "13911112222", "wechat": "wx_a"}
    assert (await act(client, w.creator, first["id"], "withdraw")).json()["state"] == "withdrawn"
    r = await client.post(f"/v1/campaigns/{cid}/signups", headers=w.creator.headers, json=body)
    assert r.status_code == 201
    # the signup deadline
    await factory.advance(DAY)
    third = (datetime.fromisoformat(w.campaign["live_from"]) + timedelta(hours=9)).isoformat()
    r = await client.post(f"/v1/campaigns/{cid}/signups", headers=w.creator.headers, json={**body, "planned_live_at": third})
    assert r.status_code == 409 and r.json()["code"] == "deadline_passed"
    # a draft campaign is invisible
    draft = await make_campaign(client, factory, publish=False, eligible=[w.creator.id])
    r = await client.post(f"/v1/campaigns/{draft['id']}/signups", headers=w.creator.headers, json=body)
    assert r.status_code == 404


async def test_every_shop_decides(client, factory: Factory):
    w = await world(client, factory, shops=3)
    a, b, c = w.merchants
    signup = await sign_up(client, w)
    r = await act(client, a, signup["id"], "merchant-approve")
    assert r.status_code == 200 and r.json()["state"] == "pending_merchant"
    assert r.json()["version"] == signup["version"] + 1
    assert r.json()["allowed_actions"] == []
    r = await act(client, a, signup["id"], "merchant-reject", {"reason": "changed my mind"})
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    r = await act(client, b, signup["id"], "merchant-reject", {"reason": "缺货"})
    assert r.json()["state"] == "pending_merchant"
    r = await act(client, c, signup["id"], "merchant-reject", {"reason": "x"})
    assert r.json()["state"] == "pending_platform"
    shops = {s["shop_id"]: s for s in r.json()["shops"]}
    assert shops[a.id]["decision"] == "approved" and shops[b.id]["decision"] == "rejected"
    assert shops[b.id]["reason"] == "缺货" and shops[b.id]["shop_name"]
    r = await act(client, b, signup["id"], "merchant-reject", {})
    assert r.status_code == 422  # the reason is required

    w2 = await world(client, factory, shops=2)
    s2 = await sign_up(client, w2)
    for m in w2.merchants:
        r = await act(client, m, s2["id"], "merchant-reject", {"reason": "no"})
    assert r.json()["state"] == "merchant_rejected"


async def test_signup_visibility(client, factory: Factory):
    w = await world(client, factory, shops=1)
    other_merchant = await factory.user("merchant")
    other_creator = await factory.user("creator")
    mine = await sign_up(client, w)
    # a second signup of another creator listing another shop
    c2 = await factory.user("creator")
    op = w.op
    await client.put(
        f"/v1/campaigns/{w.campaign['id']}/eligible-creators", headers=op.headers, json={"creator_ids": [w.creator.id, c2.id]}
    )
    r = await client.post(
        f"/v1/campaigns/{w.campaign['id']}/signups",
        headers=c2.headers,
        json={"shop_ids": [other_merchant.id], "planned_live_at": w.campaign["live_from"]},
    )
    theirs = r.json()
    for user in (other_merchant, other_creator):
        assert (await client.get(f"/v1/campaign-signups/{mine['id']}", headers=user.headers)).status_code == 404
        assert (await client.get(f"/v1/campaign-signups/{mine['id']}/history", headers=user.headers)).status_code == 404
    assert (await act(client, other_merchant, mine["id"], "merchant-approve")).status_code == 404
    assert (await act(client, other_creator, mine["id"], "withdraw")).status_code == 404
    url = f"/v1/campaigns/{w.campaign['id']}/signups"
    ids = lambda u, **p: client.get(url, headers=u.headers, params=p)  # noqa: E731
    assert [s["id"] for s in (await ids(w.merchants[0])).json()["items"]] == [mine["id"]]
    assert [s["id"] for s in (await ids(other_merchant)).json()["items"]] == [theirs["id"]]
    assert [s["id"] for s in (await ids(w.creator)).json()["items"]] == [mine["id"]]
    assert (await ids(other_creator)).json()["items"] == []
    assert {s["id"] for s in (await ids(op)).json()["items"]} == {mine["id"], theirs["id"]}
    await act(client, w.merchants[0], mine["id"], "merchant-approve")
    assert [s["id"] for s in (await ids(op, state="pending_platform")).json()["items"]] == [mine["id"]]
    assert (await ids(op, state="bogus")).status_code == 422
    page = (await ids(op, limit=1)).json()
    assert len(page["items"]) == 1 and page["next_cursor"]


async def test_expiry_and_deadlines(client, factory: Factory):
    w = await world(client, factory)
    signup = await sign_up(client, w)
    await factory.advance(3 * DAY)  # exactly product_deadline
    r = await act(client, w.merchants[0], signup["id"], "merchant-approve")
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition" and r.json()["state"] == "expired"
    hist = (await client.get(f"/v1/campaign-signups/{signup['id']}/history", headers=w.creator.headers)).json()
    assert hist[-1]["actor_id"] == "system" and hist[-1]["to_state"] == "expired"

    # products_submitted does not expire, but a revision after the deadline is deadline_passed
    w, signup = await reach(client, factory, "products_submitted")
    await factory.advance(3 * DAY + 10)
    r = await fire(client, w, signup["id"], "submit-products")
    assert r.status_code == 409 and r.json()["code"] == "deadline_passed"
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.creator.headers)).json()
    assert got["state"] == "products_submitted" and "submit-products" not in got["allowed_actions"]
    r = await fire(client, w, signup["id"], "merchant-confirm-stock")
    assert r.json()["state"] == "stock_confirmed"


async def test_products_and_stock_confirmations(client, factory: Factory):
    w = await world(client, factory, shops=3)
    a, b, c = w.merchants
    signup = await sign_up(client, w)
    await act(client, a, signup["id"], "merchant-approve")
    await act(client, b, signup["id"], "merchant-approve")
    await act(client, c, signup["id"], "merchant-reject", {"reason": "no"})
    await act(client, w.op, signup["id"], "platform-approve")
    r = await act(client, w.op, signup["id"], "grant-traffic", {"traffic_units": 0})
    assert r.status_code == 422
    r = await act(client, w.op, signup["id"], "grant-traffic", {"traffic_units": 500, "note": "n"})
    assert r.json()["traffic_units"] == 500 and r.json()["state"] == "traffic_granted"
    pa, pb, pc = (w.products[m.id]["id"] for m in w.merchants)
    url = "submit-products"
    r = await act(client, w.creator, signup["id"], url, {"items": [{"product_id": pc, "planned_quantity": 1}]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "items", 0, "product_id"]
    r = await act(
        client,
        w.creator,
        signup["id"],
        url,
        {"items": [{"product_id": pa, "planned_quantity": 1}, {"product_id": pa, "planned_quantity": 2}]},
    )
    assert r.status_code == 422
    r = await act(client, w.creator, signup["id"], url, {"items": [{"product_id": pa, "planned_quantity": 0}]})
    assert r.status_code == 422
    r = await act(
        client,
        w.creator,
        signup["id"],
        url,
        {"items": [{"product_id": pa, "planned_quantity": 10}, {"product_id": pb, "planned_quantity": 20}]},
    )
    assert r.json()["state"] == "products_submitted" and len(r.json()["items"]) == 2
    # c has no products: it cannot confirm stock
    r = await act(client, c, signup["id"], "merchant-confirm-stock")
    assert r.status_code == 409
    r = await act(client, a, signup["id"], "merchant-confirm-stock")
    assert r.json()["state"] == "products_submitted"
    shops = {s["shop_id"]: s for s in r.json()["shops"]}
    assert shops[a.id]["stock_confirmed"] and not shops[b.id]["stock_confirmed"]
    assert [i["product_id"] for i in r.json()["items"]] == [pa]  # a merchant sees its own products
    # a revision resets the confirmations
    r = await act(
        client,
        w.creator,
        signup["id"],
        url,
        {"items": [{"product_id": pa, "planned_quantity": 11}, {"product_id": pb, "planned_quantity": 20}]},
    )
    assert not any(s["stock_confirmed"] for s in r.json()["shops"])
    await act(client, a, signup["id"], "merchant-confirm-stock")
    r = await act(client, b, signup["id"], "merchant-confirm-stock")
    assert r.json()["state"] == "stock_confirmed"
    r = await act(client, w.op, signup["id"], "platform-confirm-stock")
    assert r.json()["state"] == "ready"


async def test_live_start_outside_the_window_is_ignored(client, factory: Factory):
    w, signup = await reach(client, factory, "ready")
    platform = await factory.user("platform")
    now = await factory.now()
    r = await client.post(
        "/v1/ingest/live-sessions",
        headers=platform.headers,
        json={
            "external_id": "early",
            "host_id": w.creator.id,
            "started_at": iso(now),
            "peak_viewers": 1,
            "room_url": "https://live.example/x",
        },
    )
    assert r.status_code == 201
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.creator.headers)).json()
    assert got["state"] == "ready"


async def _submitted(client, w: World, creator: User, quantity: int, product_id: str, planned_live_at=None):
    s = await sign_up(client, w, creator=creator, **({"planned_live_at": planned_live_at} if planned_live_at else {}))
    for action, user, body in [
        ("merchant-approve", w.merchants[0], None),
        ("platform-approve", w.op, None),
        ("grant-traffic", w.op, {"traffic_units": 1}),
        ("submit-products", creator, {"items": [{"product_id": product_id, "planned_quantity": quantity}]}),
    ]:
        r = await act(client, user, s["id"], action, body)
        assert r.status_code == 200, r.text
    return s


async def test_stock_plan_seed_example_and_export(client, factory: Factory):
    merchant = await factory.user("merchant", shop_name="苹果专卖")
    a = await factory.user("creator", nickname="达人A", contact={"phone": "13800000001", "wechat": "wx_a"})
    b = await factory.user("creator", nickname="达人B", contact={"phone": "13800000002", "wechat": "wx_b"})
    late = await factory.user("creator", nickname="达人C")
    campaign = await make_campaign(client, factory, eligible=[a.id, b.id, late.id])
    w = World(await factory.operator(), campaign, a, [merchant])
    phone = (
        await client.post(
            "/v1/products", headers=merchant.headers, json={"title": "苹果手机", "price_fen": 599900, "inventory": 20}
        )
    ).json()
    await _submitted(client, w, a, 100, phone["id"])
    await _submitted(client, w, b, 50, phone["id"])
    # a signup not yet at products_submitted, and a rejected one, do not count
    await sign_up(client, w, creator=late)
    url = f"/v1/campaigns/{campaign['id']}/stock-plan"
    plan = (await client.get(url, headers=merchant.headers)).json()
    assert len(plan["items"]) == 1
    row = plan["items"][0]
    assert (row["product_id"], row["inventory"], row["planned_total"], row["at_risk"]) == (phone["id"], 20, 150, True)
    assert {c["nickname"]: c["planned_quantity"] for c in row["creators"]} == {"达人A": 100, "达人B": 50}
    assert {c["contact"]["wechat"] for c in row["creators"]} == {"wx_a", "wx_b"}
    # another merchant sees nothing; creators may not call it
    other = await factory.user("merchant")
    assert (await client.get(url, headers=other.headers)).json()["items"] == []
    assert (await client.get(url, headers=a.headers)).status_code == 403

    # the plan hands out signed download links: they work with no bearer token, for this merchant
    for fmt in ("csv", "xlsx"):
        download = await client.get(plan["download_urls"][fmt])
        assert download.status_code == 200, download.text
    signed_csv = (await client.get(plan["download_urls"]["csv"])).content
    # export: CSV with BOM
    r = await client.get(url + "/export", headers=merchant.headers, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content == signed_csv
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "product_id",
        "product",
        "creator_id",
        "creator",
        "contact_phone",
        "wechat",
        "planned_quantity",
        "inventory",
        "at_risk",
    ]
    body = sorted(rows[1:], key=lambda x: x[3])
    assert body == [
        [phone["id"], "苹果手机", a.id, "达人A", "13800000001", "wx_a", "100", "20", "yes"],
        [phone["id"], "苹果手机", b.id, "达人B", "13800000002", "wx_b", "50", "20", "yes"],
    ]
    # XLSX
    from openpyxl import load_workbook

    r = await client.get(url + "/export", headers=merchant.headers, params={"format": "xlsx"})
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    sheet = load_workbook(io.BytesIO(r.content)).active
    values = [list(v) for v in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "product_id"
    assert sorted(v[6] for v in values[1:]) == [50, 100] and all(v[8] is True for v in values[1:])
    assert (await client.get(url + "/export", headers=merchant.headers, params={"format": "pdf"})).status_code == 422

    # 补充库存 clears the risk
    r = await client.patch(f"/v1/products/{phone['id']}", headers=merchant.headers, json={"inventory": 150})
    assert r.status_code == 200
    row = (await client.get(url, headers=merchant.headers)).json()["items"][0]
    assert row["planned_total"] == 150 and row["at_risk"] is False
    r = await client.get(url + "/export", headers=merchant.headers)
    assert r.content.decode("utf-8-sig").splitlines()[1].endswith(",150,no")


async def test_find_creators_cards_and_gmv(client, factory: Factory):
    platform = await factory.user("platform")
    merchant = await factory.user("merchant")
    star = await factory.user("creator", nickname="小美_star", level=6)
    small = await factory.user("creator", nickname="小帅", level=1)
    outsider = await factory.user("creator", nickname="小美 outsider", level=7)
    campaign = await make_campaign(client, factory, eligible=[star.id, small.id])
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10})
    ).json()
    now = await factory.now()
    orders = [
        {
            "external_id": f"o{i}",
            "shop_id": merchant.id,
            "product_id": product["id"],
            "creator_id": star.id,
            "channel": "live",
            "amount_fen": amount,
            "status": "paid",
            "paid_at": iso(now - timedelta(days=days)),
        }
        for i, (amount, days) in enumerate([(10000, 1), (5000, 2), (7000, 40)])
    ]
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": orders})
    assert r.status_code == 200, r.text
    await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": [{**orders[1], "status": "refunded"}]})
    url = f"/v1/campaigns/{campaign['id']}/creators"
    r = await client.put(
        f"/v1/campaigns/{campaign['id']}/my-card",
        headers=star.headers,
        json={
            "contact": {"phone": "13700000000", "wechat": "star_wx"},
            "intended_merchants": ["苹果专卖"],
            "cooperation_note": "只带数码",
        },
    )
    assert r.status_code == 200 and r.json()["contact"]["wechat"] == "star_wx"
    # read-modify-write: the card it answered goes back as it is (the server's fields ignored)
    again = await client.put(f"/v1/campaigns/{campaign['id']}/my-card", headers=star.headers, json=r.json())
    assert again.status_code == 200 and again.json()["cooperation_note"] == "只带数码", again.text
    bad = await client.put(f"/v1/campaigns/{campaign['id']}/my-card", headers=star.headers, json={**r.json(), "extra": 1})
    assert bad.status_code == 422  # only the fields the server owns are ignored
    r = await client.put(f"/v1/campaigns/{campaign['id']}/my-card", headers=outsider.headers, json={})
    assert r.status_code == 403 and r.json()["code"] == "not_eligible"
    items = (await client.get(url, headers=merchant.headers)).json()["items"]
    by_id = {i["creator_id"]: i for i in items}
    assert set(by_id) == {star.id, small.id}
    assert by_id[star.id]["gmv_30d_fen"] == 10000 and by_id[small.id]["gmv_30d_fen"] == 0
    assert by_id[star.id]["card"]["cooperation_note"] == "只带数码" and by_id[small.id]["card"] is None
    assert by_id[star.id]["level"] == 6 and by_id[star.id]["followers"] == 1000
    found = (await client.get(url, headers=merchant.headers, params={"q": "小美"})).json()["items"]
    assert [i["creator_id"] for i in found] == [star.id]
    assert (await client.get(url, headers=merchant.headers, params={"q": "%"})).json()["items"] == []
    found = (await client.get(url, headers=merchant.headers, params={"level_min": 2})).json()["items"]
    assert [i["creator_id"] for i in found] == [star.id]
    assert (await client.get(url, headers=merchant.headers, params={"level_min": 9})).status_code == 422
    # the card can be replaced
    r = await client.put(f"/v1/campaigns/{campaign['id']}/my-card", headers=star.headers, json={"cooperation_note": "全品类"})
    assert r.json()["cooperation_note"] == "全品类" and r.json()["intended_merchants"] == []


async def test_intents(client, factory: Factory):
    op = await factory.operator()
    m1 = await factory.user("merchant", shop_name="一号店")
    m2 = await factory.user("merchant", shop_name="二号店")
    wanted = await factory.user("creator")
    outsider = await factory.user("creator")
    campaign = await make_campaign(client, factory, eligible=[wanted.id])
    url = f"/v1/campaigns/{campaign['id']}/intents"
    r = await client.post(url, headers=m1.headers, json={"description": "找数码达人", "creator_ids": [wanted.id]})
    assert r.status_code == 201 and r.json()["shop_name"] == "一号店"
    await client.post(url, headers=m2.headers, json={"description": "美妆"})
    r = await client.post(url, headers=m1.headers, json={"description": "x", "creator_ids": [outsider.id]})
    assert r.status_code == 422
    assert (await client.post(url, headers=wanted.headers, json={"description": "x"})).status_code == 403
    own = (await client.get(url, headers=m1.headers)).json()["items"]
    assert [i["description"] for i in own] == ["找数码达人"]
    seen = (await client.get(url, headers=wanted.headers)).json()["items"]
    assert {i["shop_name"] for i in seen} == {"一号店", "二号店"}
    assert len((await client.get(url, headers=op.headers)).json()["items"]) == 2
    r = await client.get(url, headers=outsider.headers)
    assert r.status_code == 403 and r.json()["code"] == "not_eligible"
    notes = (await client.get("/v1/notifications", headers=wanted.headers)).json()["items"]
    assert any(n["kind"] == "campaign_intent.created" for n in notes)


async def test_demo_step_is_idempotent(client, factory: Factory, db):
    from sqlalchemy import select

    from app.db.models.accounts import Account
    from app.demo.campaigns import demo_step

    op = await factory.operator()
    creator = await factory.user("creator")
    merchant = await factory.user("merchant")
    async with db() as session:
        accounts = {
            u: await session.scalar(select(Account).where(Account.id == i))
            for u, i in [("operator", op.id), ("creator", creator.id), ("merchant", merchant.id)]
        }
        assert len(await demo_step(session, accounts)) == 1
        assert await demo_step(session, accounts) == []
        await session.commit()
    signups = (await client.get("/v1/campaigns", headers=merchant.headers)).json()["items"]
    cid = signups[0]["id"]
    listed = (await client.get(f"/v1/campaigns/{cid}/signups", headers=merchant.headers)).json()["items"]
    assert [s["state"] for s in listed] == ["pending_merchant"]
    assert listed[0]["allowed_actions"] == ["merchant-approve", "merchant-reject"]


async def test_live_session_moves_the_nearest_ready_signup(client, factory: Factory):
    w = await world(client, factory)
    m = w.merchants[0]
    product_id = w.products[m.id]["id"]
    live_from = datetime.fromisoformat(w.campaign["live_from"])
    early, late = [await _submitted(client, w, w.creator, 1, product_id, iso(live_from + timedelta(hours=h))) for h in (1, 30)]
    for s in (early, late):
        await act(client, m, s["id"], "merchant-confirm-stock")
        assert (await act(client, w.op, s["id"], "platform-confirm-stock")).json()["state"] == "ready"
    platform = await factory.user("platform")
    await factory.advance(4 * DAY + 29 * 3600)  # live_from + 29 h: nearer the late slot
    now = await factory.now()
    live = {
        "external_id": "ls-near",
        "host_id": w.creator.id,
        "started_at": iso(now),
        "peak_viewers": 5,
        "room_url": "https://live.example/n",
    }
    await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=live)
    state = lambda s: client.get(f"/v1/campaign-signups/{s['id']}", headers=w.creator.headers)  # noqa: E731
    assert (await state(late)).json()["state"] == "live"
    assert (await state(early)).json()["state"] == "ready"
    await client.post(
        "/v1/ingest/live-sessions", headers=platform.headers, json={**live, "ended_at": iso(now + timedelta(hours=1))}
    )
    got = (await state(late)).json()
    assert got["state"] == "finished" and got["live_session_id"]


async def test_signup_events_concern_every_listed_shop(client, factory: Factory):
    """The created event and the expiry the timer fires reach the creator and every listed shop,
    and nobody else."""
    w = await world(client, factory, shops=2)
    outsider = await factory.user("merchant")
    signup = await sign_up(client, w)
    await factory.advance(3 * DAY + 60)
    got = (await client.get(f"/v1/campaign-signups/{signup['id']}", headers=w.op.headers)).json()
    assert got["state"] == "expired" and got["version"] == signup["version"] + 1
    for user in (w.creator, *w.merchants):
        events = (await client.get("/v1/events", headers=user.headers, params={"limit": 100})).json()["items"]
        mine = [(e["type"], e["data"]["version"]) for e in events if e["data"].get("id") == signup["id"]]
        assert mine == [("campaign_signup.created", 1), ("campaign_signup.expired", 2)], (user.role, mine)
    events = (await client.get("/v1/events", headers=outsider.headers, params={"limit": 100})).json()["items"]
    assert not [e for e in events if e["data"].get("id") == signup["id"]]


async def test_creators_see_only_their_own_card_contact(client, factory: Factory):
    """A card's contact is published to merchants and operators; another creator gets it blank."""
    a = await factory.user("creator", nickname="甲")
    b = await factory.user("creator", nickname="乙")
    merchant = await factory.user("merchant")
    op = await factory.operator()
    campaign = await make_campaign(client, factory, eligible=[a.id, b.id])
    for user, wx in ((a, "wx_a"), (b, "wx_b")):
        r = await client.put(
            f"/v1/campaigns/{campaign['id']}/my-card",
            headers=user.headers,
            json={"contact": {"phone": "13700000000", "wechat": wx}, "cooperation_note": "n"},
        )
        assert r.status_code == 200, r.text
    url = f"/v1/campaigns/{campaign['id']}/creators"
    seen = {i["creator_id"]: i["card"]["contact"] for i in (await client.get(url, headers=a.headers)).json()["items"]}
    assert seen == {a.id: {"phone": "13700000000", "wechat": "wx_a"}, b.id: {"phone": None, "wechat": None}}
    for user in (merchant, op):
        seen = {
            i["creator_id"]: i["card"]["contact"]["wechat"] for i in (await client.get(url, headers=user.headers)).json()["items"]
        }
        assert seen == {a.id: "wx_a", b.id: "wx_b"}


async def test_my_card_get_answers_what_put_accepts_back(client, factory: Factory):
    """client-contract.md: a PUT accepts the body its GET answered (server-owned fields ignored)."""
    creator = await factory.user("creator", nickname="丙")
    campaign = await make_campaign(client, factory, eligible=[creator.id])
    url = f"/v1/campaigns/{campaign['id']}/my-card"
    missing = await client.get(url, headers=creator.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    body = {"contact": {"phone": "13700000001", "wechat": "wx_c"}, "intended_merchants": ["品牌甲"], "cooperation_note": "晚场"}
    put = await client.put(url, headers=creator.headers, json=body)
    assert put.status_code == 200, put.text
    got = await client.get(url, headers=creator.headers)
    assert got.status_code == 200 and got.json() == put.json()
    again = await client.put(url, headers=creator.headers, json=got.json())  # the GET body, as it came
    assert again.status_code == 200, again.text
    assert {k: again.json()[k] for k in body} == body
    merchant = await factory.user("merchant")
    assert (await client.get(url, headers=merchant.headers)).status_code == 403  # a creator's own card
