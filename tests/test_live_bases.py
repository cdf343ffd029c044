"""Live bases through HTTP: bases, bindings, the product pool, check-in, cooperations, stats."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from app.state import clock
from tests.conftest import Factory, User, postgres_only

DAY = 86400


# -- helpers ---------------------------------------------------------------------------------
async def make_base(client, agency: User, name: str = "Base") -> dict:
    r = await client.post("/v1/live-bases", headers=agency.headers, json={"name": name, "address": "杭州市 1 号"})
    assert r.status_code == 201, r.text
    return r.json()


async def invite_creator(client, agency: User, creator: User, commission_bp: int = 1000) -> dict:
    r = await client.post(
        "/v1/creator-bindings", headers=agency.headers, json={"creator_id": creator.id, "commission_bp": commission_bp}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def bind_creator(client, agency: User, creator: User) -> dict:
    binding = await invite_creator(client, agency, creator)
    r = await client.post(f"/v1/creator-bindings/{binding['id']}/accept", headers=creator.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def bind_shop(client, agency: User, merchant: User) -> dict:
    r = await client.post("/v1/shop-bindings", headers=agency.headers, json={"shop_id": merchant.id, "type": "live_base"})
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/shop-bindings/{r.json()['id']}/accept", headers=merchant.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def code_of(client, agency: User, base_id: str) -> str:
    r = await client.get(f"/v1/live-bases/{base_id}/check-in-code", headers=agency.headers)
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def scan(client, creator: User, agency: User, base_id: str) -> dict:
    token = await code_of(client, agency, base_id)
    r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": token})
    assert r.status_code == 201, r.text
    return r.json()


async def check_in(client, creator: User, agency: User, base_id: str) -> dict:
    pending = await scan(client, creator, agency, base_id)
    assert pending["state"] == "pending_confirmation", pending
    r = await client.post(f"/v1/check-ins/{pending['id']}/confirm", headers=creator.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def product(client, merchant: User, **fields) -> dict:
    body = {"title": "P", "brand": "B", "price_fen": 1000, "inventory": 10, **fields}
    r = await client.post("/v1/products", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def pool(client, agency: User, **params) -> list[dict]:
    r = await client.get("/v1/product-pool", headers=agency.headers, params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


# -- bases -----------------------------------------------------------------------------------
async def test_bases_create_list_detail_and_visibility(client, factory: Factory):
    agency = await factory.user("agency", name="星河机构")
    other = await factory.user("agency")
    creator = await factory.user("creator")
    merchant = await factory.user("merchant")
    base = await make_base(client, agency, "西溪基地")
    assert base["agency_id"] == agency.id and base["name"] == "西溪基地"
    await make_base(client, other, "Other")

    r = await client.post("/v1/live-bases", headers=creator.headers, json={"name": "x", "address": "y"})
    assert r.status_code == 403
    r = await client.post("/v1/live-bases", headers=agency.headers, json={"name": "", "address": "y"})
    assert r.status_code == 422
    r = await client.post("/v1/live-bases", headers=agency.headers, json={"name": "x", "address": "y", "extra": 1})
    assert r.status_code == 422

    mine = (await client.get("/v1/live-bases", headers=agency.headers)).json()["items"]
    assert [b["id"] for b in mine] == [base["id"]]
    assert (await client.get(f"/v1/live-bases/{base['id']}", headers=other.headers)).status_code == 404
    assert (await client.get("/v1/live-bases/lbs_nope", headers=agency.headers)).status_code == 404
    # a merchant sees the bases of agencies its shop is bound to, only
    assert (await client.get(f"/v1/live-bases/{base['id']}", headers=merchant.headers)).status_code == 404
    assert (await client.get("/v1/live-bases", headers=merchant.headers)).json()["items"] == []
    await bind_shop(client, agency, merchant)
    assert (await client.get(f"/v1/live-bases/{base['id']}", headers=merchant.headers)).status_code == 200

    page = (await client.get(f"/v1/live-bases/{base['id']}", headers=creator.headers)).json()
    assert page["agency"] == {"id": agency.id, "name": "星河机构", "head_annual": False}
    assert [s["id"] for s in page["shops"]] == [merchant.id]
    assert page["products"] == []
    assert len((await client.get("/v1/live-bases", headers=creator.headers)).json()["items"]) >= 2


# -- state machine matrices ------------------------------------------------------------------
BINDING_STATES = ["invited", "active", "declined", "revoked", "expired", "terminated"]
BINDING_ACTIONS = ["accept", "decline", "revoke", "terminate"]
BINDING_ALLOWED = {"invited": {"accept", "decline", "revoke"}, "active": {"terminate"}}


async def _binding_in(client, factory: Factory, kind: str, state: str):
    """A fresh (agency, counterpart, binding) with the binding in `state`."""
    agency = await factory.user("agency")
    party = await factory.user("creator" if kind == "creator" else "merchant")
    url = f"/v1/{kind}-bindings"
    body = {"creator_id": party.id, "commission_bp": 500} if kind == "creator" else {"shop_id": party.id}
    r = await client.post(url, headers=agency.headers, json=body)
    assert r.status_code == 201, r.text
    binding = r.json()
    assert binding["state"] == "invited"
    steps = {
        "active": [("accept", party)],
        "declined": [("decline", party)],
        "revoked": [("revoke", agency)],
        "terminated": [("accept", party), ("terminate", agency)],
    }.get(state, [])
    for action, who in steps:
        r = await client.post(f"{url}/{binding['id']}/{action}", headers=who.headers)
        assert r.status_code == 200, r.text
    if state == "expired":
        await factory.advance(7 * DAY + 1)
    r = await client.get(f"{url}/{binding['id']}", headers=agency.headers)
    assert r.json()["state"] == state
    return agency, party, r.json()


@pytest.mark.parametrize("kind", ["creator", "shop"])
async def test_binding_every_state_every_action(client, factory: Factory, kind):
    for state in BINDING_STATES:
        for action in BINDING_ACTIONS:
            agency, party, binding = await _binding_in(client, factory, kind, state)
            actor = agency if action in ("revoke", "terminate") else party
            r = await client.post(f"/v1/{kind}-bindings/{binding['id']}/{action}", headers=actor.headers, json={"reason": "test"})
            if action in BINDING_ALLOWED.get(state, set()):
                assert r.status_code == 200, (state, action, r.text)
            else:
                assert r.status_code == 409, (state, action, r.text)
                assert r.json()["code"] == "invalid_transition"
                assert r.json()["state"] == state


@pytest.mark.parametrize("kind", ["creator", "shop"])
async def test_binding_roles_visibility_and_history(client, factory: Factory, kind):
    agency, party, binding = await _binding_in(client, factory, kind, "invited")
    url = f"/v1/{kind}-bindings/{binding['id']}"
    stranger_agency = await factory.user("agency")
    stranger = await factory.user("creator" if kind == "creator" else "merchant")
    assert (await client.get(url, headers=stranger_agency.headers)).status_code == 404
    assert (await client.get(url, headers=stranger.headers)).status_code == 404
    assert (await client.get(f"{url}/history", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"{url}/accept", headers=stranger.headers)).status_code == 404
    assert (await client.post(f"{url}/revoke", headers=stranger_agency.headers)).status_code == 404
    assert (await client.post(f"{url}/accept", headers=agency.headers)).status_code == 403
    seen_by_party = (await client.get(url, headers=party.headers)).json()
    assert set(seen_by_party["allowed_actions"]) == {"accept", "decline"}
    assert (await client.get(url, headers=agency.headers)).json()["allowed_actions"] == ["revoke"]
    listed = (await client.get(f"/v1/{kind}-bindings", headers=party.headers, params={"state": "invited"})).json()
    assert [b["id"] for b in listed["items"]] == [binding["id"]]
    assert (await client.get(f"/v1/{kind}-bindings", headers=stranger_agency.headers)).json()["items"] == []
    # the invitation expires after 7 days, fired by the system
    await factory.advance(7 * DAY + 1)
    history = (await client.get(f"{url}/history", headers=party.headers)).json()
    assert [(h["action"], h["to_state"], h["actor_id"]) for h in history] == [
        ("create", "invited", agency.id),
        ("expire", "expired", "system"),
    ]
    # a new invitation is possible once the old one is over
    body = {"creator_id": party.id, "commission_bp": 1} if kind == "creator" else {"shop_id": party.id}
    r = await client.post(f"/v1/{kind}-bindings", headers=agency.headers, json=body)
    assert r.status_code == 201
    r = await client.post(f"/v1/{kind}-bindings", headers=agency.headers, json=body)
    assert r.status_code == 409 and r.json()["code"] == "already_invited"


async def test_creator_binding_rules(client, factory: Factory):
    platform = await factory.user("platform")
    agency = await factory.user("agency")
    head = await factory.user("agency", head_annual=True)
    creator = await factory.user("creator")
    merchant = await factory.user("merchant")
    r = await client.post("/v1/creator-bindings", headers=agency.headers, json={"creator_id": merchant.id, "commission_bp": 1})
    assert r.status_code == 422
    r = await client.post("/v1/creator-bindings", headers=agency.headers, json={"creator_id": creator.id, "commission_bp": 10001})
    assert r.status_code == 422
    first = await invite_creator(client, agency, creator)
    second = await invite_creator(client, head, creator)
    assert first["strong"] is False and second["strong"] is True and first["live_count"] is None
    # the commission is set while active only
    r = await client.patch(f"/v1/creator-bindings/{first['id']}", headers=agency.headers, json={"commission_bp": 5})
    assert r.status_code == 409
    r = await client.post(f"/v1/creator-bindings/{first['id']}/accept", headers=creator.headers)
    assert r.status_code == 200 and r.json()["state"] == "active" and r.json()["live_count"] == 0
    # offered actions are actions that work: the second invitation offers no `accept` while the
    # creator is bound, and accepting anyway is 409 already_bound (the machine's one guard)
    seen = await client.get(f"/v1/creator-bindings/{second['id']}", headers=creator.headers)
    assert seen.json()["allowed_actions"] == ["decline"]
    listed = (await client.get("/v1/creator-bindings", headers=creator.headers, params={"state": "invited"})).json()["items"]
    assert [b["allowed_actions"] for b in listed if b["id"] == second["id"]] == [["decline"]]
    r = await client.post(f"/v1/creator-bindings/{second['id']}/accept", headers=creator.headers)
    assert r.status_code == 409 and r.json()["code"] == "already_bound" and r.json()["binding_id"] == first["id"]
    r = await client.post("/v1/creator-bindings", headers=agency.headers, json={"creator_id": creator.id, "commission_bp": 1})
    assert r.status_code == 409 and r.json()["code"] == "already_bound"
    r = await client.patch(f"/v1/creator-bindings/{first['id']}", headers=agency.headers, json={"commission_bp": 1500})
    assert r.status_code == 200 and r.json()["commission_bp"] == 1500
    r = await client.patch(f"/v1/creator-bindings/{first['id']}", headers=head.headers, json={"commission_bp": 1})
    assert r.status_code == 404
    r = await client.patch(f"/v1/creator-bindings/{first['id']}", headers=creator.headers, json={"commission_bp": 1})
    assert r.status_code == 403
    # live_count: sessions since the binding began
    now = await factory.now()
    for i, started in enumerate([now - timedelta(days=1), now + timedelta(minutes=1), now + timedelta(minutes=5)]):
        r = await client.post(
            "/v1/ingest/live-sessions",
            headers=platform.headers,
            json={
                "external_id": f"ls-{i}",
                "host_id": creator.id,
                "started_at": started.isoformat(),
                "room_url": "https://live.example/x",
            },
        )
        assert r.status_code == 201
    binding = (await client.get(f"/v1/creator-bindings/{first['id']}", headers=agency.headers)).json()
    assert binding["live_count"] == 2
    # the creator ends it, then may accept the head agency's invitation (a strong binding)
    r = await client.post(f"/v1/creator-bindings/{first['id']}/terminate", headers=creator.headers, json={"reason": "moving on"})
    assert r.status_code == 200 and r.json()["state"] == "terminated" and r.json()["ended_at"]
    r = await client.post(f"/v1/creator-bindings/{second['id']}/accept", headers=creator.headers)
    assert r.status_code == 200 and r.json()["strong"] is True


# -- product pool ----------------------------------------------------------------------------
async def test_product_pool_follows_bindings_products_and_shops(client, factory: Factory):
    op = await factory.operator()
    agency = await factory.user("agency")
    other_agency = await factory.user("agency")
    creator = await factory.user("creator")
    merchant = await factory.user("merchant", experience_score="4.50")
    good = await product(client, merchant, title="Good")
    unbranded = await product(client, merchant, title="NoBrand", brand=None)
    off = await product(client, merchant, title="Off", status="off_sale")
    base = await make_base(client, agency)
    assert await pool(client, agency) == []  # not bound yet

    binding = await bind_shop(client, agency, merchant)
    items = {i["product"]["title"]: i for i in await pool(client, agency)}
    assert set(items) == {"Good", "NoBrand", "Off"}
    assert {t: i["qualifies"] for t, i in items.items()} == {"Good": True, "NoBrand": False, "Off": False}
    assert all(i["listed"] is False and i["shop"]["id"] == merchant.id for i in items.values())
    assert (await client.get("/v1/product-pool", headers=creator.headers)).status_code == 403
    assert await pool(client, other_agency) == []

    r = await client.post(f"/v1/product-pool/{items['NoBrand']['item_id']}/list", headers=agency.headers)
    assert r.status_code == 409 and r.json()["code"] == "not_qualified"
    r = await client.post(f"/v1/product-pool/{items['Good']['item_id']}/list", headers=other_agency.headers)
    assert r.status_code == 404
    r = await client.post(f"/v1/product-pool/{items['Good']['item_id']}/list", headers=agency.headers)
    assert r.status_code == 200 and r.json()["listed"] is True
    assert [i["product"]["id"] for i in await pool(client, agency, listed="true")] == [good["id"]]
    assert len(await pool(client, agency, listed="false")) == 2
    home = (await client.get(f"/v1/live-bases/{base['id']}", headers=creator.headers)).json()
    assert [p["id"] for p in home["products"]] == [good["id"]]

    # a product that gets a brand and goes on sale now qualifies; one that loses its brand is unlisted
    await client.patch(f"/v1/products/{unbranded['id']}", headers=merchant.headers, json={"brand": "Now"})
    await client.patch(f"/v1/products/{off['id']}", headers=merchant.headers, json={"status": "on_sale"})
    await client.patch(f"/v1/products/{good['id']}", headers=merchant.headers, json={"brand": None})
    items = {i["product"]["title"]: i for i in await pool(client, agency)}
    assert {t: (i["qualifies"], i["listed"]) for t, i in items.items()} == {
        "Good": (False, False),
        "NoBrand": (True, False),
        "Off": (True, False),
    }
    r = await client.post(f"/v1/product-pool/{items['Off']['item_id']}/list", headers=agency.headers)
    assert r.status_code == 200
    # a new product of a bound shop joins the pool
    await product(client, merchant, title="New")
    assert len(await pool(client, agency)) == 4
    # the shop's experience score drops below 4.0: nothing qualifies, everything is unlisted
    r = await client.patch(f"/v1/accounts/{merchant.id}", headers=op.headers, json={"profile": {"experience_score": "3.90"}})
    assert r.status_code == 200
    assert all(not i["qualifies"] and not i["listed"] for i in await pool(client, agency))
    await client.patch(f"/v1/accounts/{merchant.id}", headers=op.headers, json={"profile": {"experience_score": "4.00"}})
    assert sum(i["qualifies"] for i in await pool(client, agency)) == 3
    assert (await client.get(f"/v1/live-bases/{base['id']}", headers=creator.headers)).json()["products"] == []
    # the binding ends: the shop's products leave the pool
    r = await client.post(f"/v1/shop-bindings/{binding['id']}/terminate", headers=merchant.headers)
    assert r.status_code == 200
    assert await pool(client, agency) == []
    assert (await client.get(f"/v1/live-bases/{base['id']}", headers=creator.headers)).json()["shops"] == []


async def test_low_score_shop_binds_with_nothing_qualifying(client, factory: Factory):
    agency = await factory.user("agency")
    merchant = await factory.user("merchant", experience_score="3.00")
    await product(client, merchant)
    await bind_shop(client, agency, merchant)
    items = await pool(client, agency)
    assert len(items) == 1 and items[0]["qualifies"] is False
    r = await client.post("/v1/shop-bindings", headers=agency.headers, json={"shop_id": merchant.id})
    assert r.status_code == 409 and r.json()["code"] == "already_bound"
    r = await client.post("/v1/shop-bindings", headers=agency.headers, json={"shop_id": merchant.id, "type": "x"})
    assert r.status_code == 422


# -- check-in codes --------------------------------------------------------------------------
async def test_check_in_code_qr_and_expiry(client, factory: Factory):
    agency = await factory.user("agency")
    other = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    r = await client.get(f"/v1/live-bases/{base['id']}/check-in-code", headers=agency.headers)
    code = r.json()
    assert r.status_code == 200 and code["token"] in code["url"].replace("%2E", ".") or code["token"] in code["url"]
    now = await factory.now()
    from datetime import datetime

    expires = datetime.fromisoformat(code["expires_at"])
    assert timedelta(seconds=1790) < expires - now <= timedelta(seconds=1800)
    svg = await client.get(f"/v1/live-bases/{base['id']}/check-in-code.svg", headers=agency.headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<?xml") or "<svg" in svg.text
    for path in ("check-in-code", "check-in-code.svg"):
        assert (await client.get(f"/v1/live-bases/{base['id']}/{path}", headers=other.headers)).status_code == 404
        assert (await client.get(f"/v1/live-bases/{base['id']}/{path}", headers=creator.headers)).status_code == 403

    r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": "garbage"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_check_in_code"
    access_token = creator.headers["Authorization"][7:]
    r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": access_token})
    assert r.status_code == 422 and r.json()["code"] == "invalid_check_in_code"
    r = await client.post("/v1/check-ins", headers=agency.headers, json={"token": code["token"]})
    assert r.status_code == 403
    await factory.advance(1801)  # a code seen off-site stops working
    r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": code["token"]})
    assert r.status_code == 422 and r.json()["code"] == "check_in_code_expired"


# -- check-in machine ------------------------------------------------------------------------
CHECK_IN_STATES = ["pending_confirmation", "rejected", "checked_in", "checked_out", "expired"]
CHECK_IN_ALLOWED = {"pending_confirmation": {"confirm"}, "checked_in": {"check-out"}}


async def _check_in_in(client, factory: Factory, state: str):
    agency = await factory.user("agency")
    creator = await factory.user("creator", level=7 if state == "rejected" else 3)
    base = await make_base(client, agency)
    row = await scan(client, creator, agency, base["id"])
    if state in ("checked_in", "checked_out"):
        r = await client.post(f"/v1/check-ins/{row['id']}/confirm", headers=creator.headers)
        assert r.status_code == 200
    if state == "checked_out":
        r = await client.post(f"/v1/check-ins/{row['id']}/check-out", headers=creator.headers)
        assert r.status_code == 200
    if state == "expired":
        await factory.advance(601)
    row = (await client.get(f"/v1/check-ins/{row['id']}", headers=creator.headers)).json()
    assert row["state"] == state
    return agency, creator, row


async def test_check_in_every_state_every_action(client, factory: Factory):
    for state in CHECK_IN_STATES:
        for action in ("confirm", "check-out"):
            agency, creator, row = await _check_in_in(client, factory, state)
            r = await client.post(f"/v1/check-ins/{row['id']}/{action}", headers=creator.headers)
            if action in CHECK_IN_ALLOWED.get(state, set()):
                assert r.status_code == 200, (state, action, r.text)
            else:
                assert r.status_code == 409 and r.json()["code"] == "invalid_transition", (state, action, r.text)
                assert r.json()["state"] == state


async def test_check_in_flow_cooperation_and_visibility(client, factory: Factory):
    agency = await factory.user("agency")
    other_agency = await factory.user("agency")
    creator = await factory.user("creator", level=4)
    other_creator = await factory.user("creator")
    base = await make_base(client, agency)
    row = await scan(client, creator, agency, base["id"])
    assert row["eligibility"] == {"eligible": True, "reasons": []}
    assert row["allowed_actions"] == ["confirm"]
    url = f"/v1/check-ins/{row['id']}"
    for who in (other_agency, other_creator):
        assert (await client.get(url, headers=who.headers)).status_code == 404
        assert (await client.post(f"{url}/confirm", headers=who.headers)).status_code == 404
    assert (await client.post(f"{url}/confirm", headers=agency.headers)).status_code == 403
    seen = (await client.get(url, headers=agency.headers)).json()
    assert seen["allowed_actions"] == []
    done = (await client.post(f"{url}/confirm", headers=creator.headers)).json()
    assert done["state"] == "checked_in" and done["checked_in_at"] and done["cooperation_id"]
    r = await client.post("/v1/check-ins", headers=creator.headers, json={"token": await code_of(client, agency, base["id"])})
    assert r.status_code == 409 and r.json()["code"] == "already_checked_in"
    coop = (await client.get(f"/v1/cooperations/{done['cooperation_id']}", headers=agency.headers)).json()
    assert coop["state"] == "active" and coop["base_id"] == base["id"]
    assert coop["allowed_actions"] == ["terminate"]
    assert (await client.get(f"/v1/cooperations/{coop['id']}", headers=other_agency.headers)).status_code == 404
    # the agency checks the creator out; a later check-in reuses the active cooperation
    r = await client.post(f"{url}/check-out", headers=agency.headers)
    assert r.status_code == 200 and r.json()["state"] == "checked_out"
    again = await check_in(client, creator, agency, base["id"])
    assert again["cooperation_id"] == coop["id"]
    listed = (await client.get("/v1/cooperations", headers=creator.headers, params={"state": "active"})).json()
    assert [c["id"] for c in listed["items"]] == [coop["id"]]
    assert (await client.get("/v1/cooperations", headers=other_creator.headers)).json()["items"] == []
    mine = (await client.get("/v1/check-ins", headers=agency.headers, params={"state": "checked_in"})).json()
    assert [c["id"] for c in mine["items"]] == [again["id"]]
    history = (await client.get(f"{url}/history", headers=creator.headers)).json()
    assert [h["action"] for h in history] == ["create", "confirm", "check-out"]
    # terminating the cooperation checks the creator out
    r = await client.post(f"/v1/cooperations/{coop['id']}/terminate", headers=creator.headers, json={"reason": "x"})
    assert r.status_code == 200 and r.json()["state"] == "terminated"
    assert (await client.get(f"/v1/check-ins/{again['id']}", headers=creator.headers)).json()["state"] == "checked_out"
    r = await client.post(f"/v1/cooperations/{coop['id']}/terminate", headers=agency.headers)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"


async def test_rule_head_agency_other_base(client, factory: Factory):
    head = await factory.user("agency", head_annual=True)
    other = await factory.user("agency")
    creator = await factory.user("creator", level=6)  # the level does not matter for a strong binding
    await bind_creator(client, head, creator)
    head_base = await make_base(client, head)
    other_base = await make_base(client, other)
    row = await scan(client, creator, other, other_base["id"])
    assert row["state"] == "rejected"
    assert row["eligibility"] == {"eligible": False, "reasons": ["head_agency_other_base"]}
    assert row["allowed_actions"] == []
    done = await check_in(client, creator, head, head_base["id"])
    assert done["state"] == "checked_in"


async def test_rule_level_too_high_and_same_base_again(client, factory: Factory):
    op = await factory.operator()
    agency = await factory.user("agency")
    creator = await factory.user("creator", level=5)
    base = await make_base(client, agency)
    row = await scan(client, creator, agency, base["id"])
    assert row["state"] == "rejected" and row["eligibility"]["reasons"] == ["level_too_high"]
    # an L4 starts a cooperation, then levels up: checking in again at the same base is allowed
    await client.patch(f"/v1/accounts/{creator.id}", headers=op.headers, json={"profile": {"level": 4}})
    first = await check_in(client, creator, agency, base["id"])
    await client.post(f"/v1/check-ins/{first['id']}/check-out", headers=creator.headers)
    await client.patch(f"/v1/accounts/{creator.id}", headers=op.headers, json={"profile": {"level": 7}})
    again = await check_in(client, creator, agency, base["id"])
    assert again["state"] == "checked_in"
    # a non-head binding does not lift the level rule at another base
    other = await factory.user("agency")
    await bind_creator(client, other, creator)
    row = await scan(client, creator, other, (await make_base(client, other))["id"])
    assert set(row["eligibility"]["reasons"]) == {"level_too_high", "cooperation_conflict"}


async def test_rule_cooperation_conflict_and_reevaluation_on_confirm(client, factory: Factory):
    a = await factory.user("agency")
    b = await factory.user("agency")
    creator = await factory.user("creator", level=2)
    base_a = await make_base(client, a)
    base_b = await make_base(client, b)
    pending_b = await scan(client, creator, b, base_b["id"])
    assert pending_b["state"] == "pending_confirmation"
    done = await check_in(client, creator, a, base_a["id"])
    # the rules are evaluated again on confirm
    r = await client.post(f"/v1/check-ins/{pending_b['id']}/confirm", headers=creator.headers)
    assert r.status_code == 200
    assert r.json()["state"] == "rejected"
    assert r.json()["eligibility"] == {"eligible": False, "reasons": ["cooperation_conflict"]}
    row = await scan(client, creator, b, base_b["id"])
    assert row["state"] == "rejected" and row["eligibility"]["reasons"] == ["cooperation_conflict"]
    # terminate the current cooperation first, then the new base works
    await client.post(f"/v1/cooperations/{done['cooperation_id']}/terminate", headers=a.headers)
    assert (await check_in(client, creator, b, base_b["id"]))["state"] == "checked_in"


# -- timers ----------------------------------------------------------------------------------
async def test_pending_check_in_expires_after_ten_minutes(client, factory: Factory):
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    row = await scan(client, creator, agency, base["id"])
    await factory.advance(599)
    assert (await client.get(f"/v1/check-ins/{row['id']}", headers=creator.headers)).json()["state"] == "pending_confirmation"
    await factory.advance(2)
    r = await client.post(f"/v1/check-ins/{row['id']}/confirm", headers=creator.headers)
    assert r.status_code == 409 and r.json()["state"] == "expired"
    history = (await client.get(f"/v1/check-ins/{row['id']}/history", headers=creator.headers)).json()
    assert history[-1]["actor_id"] == "system" and history[-1]["to_state"] == "expired"


async def test_checked_in_is_checked_out_at_local_midnight(client, factory: Factory):
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    row = await check_in(client, creator, agency, base["id"])
    now = await factory.now()
    midnight = clock.next_local_midnight(now)
    await factory.advance(int((midnight - now).total_seconds()) - 5)
    assert (await client.get(f"/v1/check-ins/{row['id']}", headers=creator.headers)).json()["state"] == "checked_in"
    await factory.advance(10)
    after = (await client.get(f"/v1/check-ins/{row['id']}", headers=agency.headers)).json()
    assert after["state"] == "checked_out" and after["checked_out_at"]
    history = (await client.get(f"/v1/check-ins/{row['id']}/history", headers=creator.headers)).json()
    assert (history[-1]["action"], history[-1]["actor_id"]) == ("check-out", "system")
    # the cooperation outlives the day
    coop = (await client.get(f"/v1/cooperations/{row['cooperation_id']}", headers=creator.headers)).json()
    assert coop["state"] == "active"


async def test_cooperation_ends_at_ends_at(client, factory: Factory):
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    row = await check_in(client, creator, agency, base["id"])
    coop = (await client.get(f"/v1/cooperations/{row['cooperation_id']}", headers=creator.headers)).json()
    from datetime import datetime

    assert datetime.fromisoformat(coop["ends_at"]) - datetime.fromisoformat(coop["started_at"]) == timedelta(days=30)
    await factory.advance(30 * DAY - 60)
    assert (await client.get(f"/v1/cooperations/{coop['id']}", headers=creator.headers)).json()["state"] == "active"
    await factory.advance(61)
    ended = (await client.get(f"/v1/cooperations/{coop['id']}", headers=agency.headers)).json()
    assert ended["state"] == "ended" and ended["allowed_actions"] == []
    history = (await client.get(f"/v1/cooperations/{coop['id']}/history", headers=agency.headers)).json()
    assert [(h["action"], h["actor_id"]) for h in history] == [("create", creator.id), ("end", "system")]
    r = await client.post(f"/v1/cooperations/{coop['id']}/terminate", headers=creator.headers)
    assert r.status_code == 409
    listed = (await client.get("/v1/cooperations", headers=agency.headers, params={"state": "ended"})).json()
    assert [c["id"] for c in listed["items"]] == [coop["id"]]


# -- stats -----------------------------------------------------------------------------------
async def test_stats(client, factory: Factory):
    platform = await factory.user("platform")
    agency = await factory.user("agency")
    other_agency = await factory.user("agency")
    bound = await factory.user("creator", nickname="Bound")
    visitor = await factory.user("creator", nickname="Visitor")
    stranger = await factory.user("creator", nickname="Stranger")
    merchant = await factory.user("merchant")
    unbound_shop = await factory.user("merchant")
    base = await make_base(client, agency)
    p1 = await product(client, merchant, title="P1")
    p2 = await product(client, merchant, title="P2")
    p3 = await product(client, unbound_shop, title="P3")
    await bind_shop(client, agency, merchant)
    await bind_creator(client, agency, bound)
    await check_in(client, visitor, agency, base["id"])
    now = await factory.now()
    paid_at = (now + timedelta(minutes=1)).isoformat()
    orders = [
        ("o1", merchant, p1, bound, 1000, "paid"),
        ("o2", merchant, p2, bound, 500, "paid"),
        ("o3", merchant, p1, visitor, 300, "paid"),
        ("o4", merchant, p1, visitor, 999, "refunded"),
        ("o5", merchant, p1, stranger, 7000, "paid"),
        ("o6", unbound_shop, p3, bound, 8000, "paid"),
    ]
    r = await client.post(
        "/v1/ingest/orders",
        headers=platform.headers,
        json={
            "orders": [
                {
                    "external_id": e,
                    "shop_id": s.id,
                    "product_id": p["id"],
                    "creator_id": c.id,
                    "channel": "live",
                    "amount_fen": amount,
                    "status": st,
                    "paid_at": paid_at,
                }
                for e, s, p, c, amount, st in orders
            ]
        },
    )
    assert r.status_code == 200, r.text
    # an order from before the binding does not count
    r = await client.post(
        "/v1/ingest/orders",
        headers=platform.headers,
        json={
            "orders": [
                {
                    "external_id": "o7",
                    "shop_id": merchant.id,
                    "product_id": p1["id"],
                    "creator_id": bound.id,
                    "channel": "live",
                    "amount_fen": 4,
                    "status": "paid",
                    "paid_at": (now - timedelta(days=2)).isoformat(),
                }
            ]
        },
    )
    await client.post(
        "/v1/ingest/live-sessions",
        headers=platform.headers,
        json={"external_id": "ls-v", "host_id": visitor.id, "started_at": paid_at, "room_url": "https://l/1"},
    )
    await client.post(
        "/v1/ingest/live-sessions",
        headers=platform.headers,
        json={"external_id": "ls-s", "host_id": stranger.id, "started_at": paid_at, "room_url": "https://l/2"},
    )
    params = {"from": (now - timedelta(days=3)).isoformat(), "to": (now + timedelta(hours=1)).isoformat()}
    r = await client.get(f"/v1/live-bases/{base['id']}/stats", headers=agency.headers, params=params)
    assert r.status_code == 200, r.text
    s = r.json()
    assert (s["gmv_fen"], s["orders"], s["check_ins"], s["live_sessions"]) == (1800, 3, 1, 1)
    assert s["by_creator"] == [
        {"creator_id": bound.id, "nickname": "Bound", "gmv_fen": 1500, "orders": 2},
        {"creator_id": visitor.id, "nickname": "Visitor", "gmv_fen": 300, "orders": 1},
    ]
    assert [(p["product_id"], p["gmv_fen"]) for p in s["by_product"]] == [(p1["id"], 1300), (p2["id"], 500)]
    assert "from" in s
    r = await client.get(f"/v1/live-bases/{base['id']}/stats", headers=other_agency.headers)
    assert r.status_code == 404
    r = await client.get(f"/v1/live-bases/{base['id']}/stats", headers=bound.headers)
    assert r.status_code == 403
    r = await client.get(
        f"/v1/live-bases/{base['id']}/stats", headers=agency.headers, params={"from": params["to"], "to": params["from"]}
    )
    assert r.status_code == 422
    r = await client.get(f"/v1/live-bases/{base['id']}/stats", headers=agency.headers, params={"from": "nope"})
    assert r.status_code == 422
    assert (await client.get(f"/v1/live-bases/{base['id']}/stats", headers=agency.headers)).status_code == 200


# -- the race --------------------------------------------------------------------------------
@postgres_only
async def test_two_confirms_at_two_bases_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        a = await factory.user("agency")
        b = await factory.user("agency")
        creator = await factory.user("creator", level=1)
        base_a = await make_base(client, a)
        base_b = await make_base(client, b)
        one = await scan(client, creator, a, base_a["id"])
        two = await scan(client, creator, b, base_b["id"])
        answers = await asyncio.gather(
            *(client.post(f"/v1/check-ins/{row['id']}/confirm", headers=creator.headers) for row in (one, two))
        )
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        states = sorted(r.json()["state"] for r in answers)
        assert states == ["checked_in", "rejected"]
        loser = next(r.json() for r in answers if r.json()["state"] == "rejected")
        assert loser["eligibility"]["reasons"] == ["cooperation_conflict"]
        coops = (await client.get("/v1/cooperations", headers=creator.headers, params={"state": "active"})).json()
        assert len(coops["items"]) == 1


@postgres_only
async def test_two_accepts_for_one_creator_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    a = await factory.user("agency")
    b = await factory.user("agency")
    creator = await factory.user("creator")
    one = await invite_creator(client, a, creator)
    two = await invite_creator(client, b, creator)
    answers = await asyncio.gather(
        *(client.post(f"/v1/creator-bindings/{row['id']}/accept", headers=creator.headers) for row in (one, two))
    )
    assert sorted(r.status_code for r in answers) == [200, 409]
    assert next(r for r in answers if r.status_code == 409).json()["code"] == "already_bound"


@postgres_only
@pytest.mark.parametrize("kind", ["creator", "shop"])
async def test_two_invitations_of_one_pair_one_wins(committed_client, committed_factory, kind):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        agency = await factory.user("agency")
        other = await factory.user("creator" if kind == "creator" else "merchant")
        path, body = (
            ("/v1/creator-bindings", {"creator_id": other.id, "commission_bp": 1000})
            if kind == "creator"
            else ("/v1/shop-bindings", {"shop_id": other.id, "type": "live_base"})
        )
        answers = await asyncio.gather(*(client.post(path, headers=agency.headers, json=body) for _ in range(4)))
        assert sorted(r.status_code for r in answers) == [201, 409, 409, 409], [r.text for r in answers]
        assert {r.json()["code"] for r in answers if r.status_code == 409} == {"already_invited"}
        listed = (await client.get(path, headers=agency.headers, params={"state": "invited"})).json()["items"]
        assert len([b for b in listed if other.id in (b.get("creator_id"), b.get("shop_id"))]) == 1


async def test_demo_step_is_idempotent(client, factory: Factory, db):
    from sqlalchemy import select

    from app.db.models.accounts import Account
    from app.demo.live_bases import demo_step as _demo_step

    agency = await factory.user("agency")
    merchant = await factory.user("merchant")
    await product(client, merchant)
    async with db() as session:
        accounts = {"agency": await session.get(Account, agency.id), "merchant": await session.get(Account, merchant.id)}
        assert len(await _demo_step(session, accounts)) == 1
        assert await _demo_step(session, accounts) == []
        await session.commit()
        assert (await session.scalars(select(Account.id).where(Account.id == agency.id))).one()
    items = await pool(client, agency, listed="true")
    assert len(items) == 1
    bases = (await client.get("/v1/live-bases", headers=agency.headers)).json()["items"]
    home = (await client.get(f"/v1/live-bases/{bases[0]['id']}", headers=agency.headers)).json()
    assert [s["id"] for s in home["shops"]] == [merchant.id] and len(home["products"]) == 1


async def test_machines_are_listed_with_diagrams(client, factory: Factory):
    creator = await factory.user("creator")
    machines = {m["name"]: m for m in (await client.get("/v1/state-machines", headers=creator.headers)).json()}
    assert machines["creator_binding"]["states"] == BINDING_STATES
    assert machines["shop_binding"]["states"] == BINDING_STATES
    assert set(machines["check_in"]["states"]) == set(CHECK_IN_STATES)
    assert machines["cooperation"]["states"] == ["active", "terminated", "ended"]
    for name in ("creator_binding", "shop_binding", "check_in", "cooperation"):
        r = await client.get(f"/v1/state-machines/{name}/diagram", headers=creator.headers)
        assert r.status_code == 200 and "stateDiagram" in r.text
