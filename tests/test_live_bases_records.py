"""Live bases on records: a transition is one conditional UPDATE (the version grows by one and
the event says so; a stale read loses and writes nothing; of two racing transitions on one
entity one wins), lists answer in a fixed number of statements per page, pages follow their
cursor."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from app.core.errors import InvalidTransition
from app.db.repositories import live_bases as repo
from app.db.repositories import pages
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import Actor
from tests.conftest import Factory, postgres_only
from tests.test_live_bases import bind_creator, bind_shop, check_in, invite_creator, make_base, pool, product, scan


async def _events_of(client, user, entity_id: str) -> list[dict]:
    items = (await client.get("/v1/events", headers=user.headers, params={"limit": 100})).json()["items"]
    return [e for e in items if e["data"].get("id") == entity_id]


async def _history(client, user, path: str) -> list[str]:
    r = await client.get(f"{path}/history", headers=user.headers)
    assert r.status_code == 200, r.text
    return [h["action"] for h in r.json()]


# -- versions --------------------------------------------------------------------------------
async def test_each_change_of_a_creator_binding_moves_its_version_by_one(client, factory: Factory):
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    binding = await invite_creator(client, agency, creator)
    assert binding["version"] == 1
    url = f"/v1/creator-bindings/{binding['id']}"
    r = await client.post(f"{url}/accept", headers=creator.headers)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["began_at"]
    r = await client.patch(url, headers=agency.headers, json={"commission_bp": 1234})
    assert r.status_code == 200 and (r.json()["version"], r.json()["commission_bp"]) == (3, 1234)
    r = await client.post(f"{url}/terminate", headers=agency.headers, json={"reason": "done"})
    assert r.status_code == 200 and r.json()["version"] == 4 and r.json()["live_count"] == 0
    assert (await client.get(url, headers=creator.headers)).json()["version"] == 4
    versions = sorted((e["data"]["action"], e["data"]["version"]) for e in await _events_of(client, creator, binding["id"]))
    assert versions == [("accept", 2), ("create", 1), ("terminate", 4)]
    r = await client.patch(url, headers=agency.headers, json={"commission_bp": 1})
    assert r.status_code == 409 and r.json()["code"] == "binding_not_active" and r.json()["state"] == "terminated"


async def test_a_confirm_writes_the_check_in_and_its_cooperation_at_once(client, factory: Factory):
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    pending = await scan(client, creator, agency, base["id"])
    assert pending["version"] == 1
    done = (await client.post(f"/v1/check-ins/{pending['id']}/confirm", headers=creator.headers)).json()
    assert done["version"] == 2 and done["state"] == "checked_in" and done["checked_in_at"]
    coop = (await client.get(f"/v1/cooperations/{done['cooperation_id']}", headers=agency.headers)).json()
    assert (coop["version"], coop["state"], coop["base_id"]) == (1, "active", base["id"])
    events = {
        e["type"]: e["data"]
        for e in (await client.get("/v1/events", headers=agency.headers, params={"limit": 100})).json()["items"]
    }
    assert events["check_in.confirmed"]["version"] == 2
    assert events["cooperation.created"]["check_in_id"] == pending["id"]
    r = await client.post(f"/v1/cooperations/{coop['id']}/terminate", headers=agency.headers)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["ended_at"]
    after = (await client.get(f"/v1/check-ins/{done['id']}", headers=creator.headers)).json()
    assert (after["state"], after["version"]) == ("checked_out", 3) and after["checked_out_at"]


async def test_a_stale_read_loses_and_writes_nothing(client, factory: Factory):
    """A confirm computed from a read taken before the creator confirmed: the conditional
    UPDATE matches no row, the answer names the state the first confirm left, and no second
    cooperation, event or history row is written."""
    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    pending = await scan(client, creator, agency, base["id"])
    async with factory.maker() as session:
        stale = await repo.check_in(session, pending["id"])
    done = (await client.post(f"/v1/check-ins/{pending['id']}/confirm", headers=creator.headers)).json()
    assert done["state"] == "checked_in"
    async with factory.maker() as session:
        with pytest.raises(InvalidTransition) as lost:
            await CHECK_IN.fire(
                session,
                stale,
                "confirm",
                Actor(creator.id, "creator"),
                extra={"eligible": True},
                changes={"eligible": True, "reasons": [], "cooperation_id": "coo_stale"},
            )
        assert lost.value.extra["state"] == "checked_in" and lost.value.extra["allowed_actions"] == ["check-out"]
        await session.commit()
    assert await _history(client, creator, f"/v1/check-ins/{pending['id']}") == ["create", "confirm"]
    again = (await client.get(f"/v1/check-ins/{pending['id']}", headers=creator.headers)).json()
    assert (again["version"], again["cooperation_id"]) == (2, done["cooperation_id"])
    coops = (await client.get("/v1/cooperations", headers=creator.headers)).json()["items"]
    assert [c["id"] for c in coops] == [done["cooperation_id"]]
    # the same for a cooperation: terminated since the read, a stale terminate loses
    async with factory.maker() as session:
        stale_coop = await repo.cooperation(session, done["cooperation_id"])
    await client.post(f"/v1/cooperations/{done['cooperation_id']}/terminate", headers=creator.headers)
    async with factory.maker() as session:
        with pytest.raises(InvalidTransition):
            await COOPERATION.fire(session, stale_coop, "terminate", Actor(agency.id, "agency"))
        await session.rollback()
    assert await _history(client, agency, f"/v1/cooperations/{done['cooperation_id']}") == ["create", "terminate"]


# -- lists -----------------------------------------------------------------------------------
def _count_statements(monkeypatch) -> Counter:
    """Statements the module's repository runs (its own and its keyset pages)."""
    seen: Counter = Counter()
    real = repo.run

    async def counting(session, statement, params=None):
        seen["statements"] += 1
        return await real(session, statement, params)

    monkeypatch.setattr(repo, "run", counting)
    monkeypatch.setattr(pages, "run", counting)
    return seen


async def test_a_page_of_creator_bindings_costs_the_same_statements_for_one_row_or_many(client, factory: Factory, monkeypatch):
    platform = await factory.user("platform")
    agency = await factory.user("agency", head_annual=True)
    creators = [await factory.user("creator") for _ in range(4)]
    await bind_creator(client, agency, creators[0])
    later = await factory.now() + timedelta(minutes=1)
    for i in range(3):  # live sessions of the bound creator since its binding began
        r = await client.post(
            "/v1/ingest/live-sessions",
            headers=platform.headers,
            json={
                "external_id": f"lb-rec-{i}",
                "host_id": creators[0].id,
                "started_at": later.isoformat(),
                "room_url": "https://live.example/r",
            },
        )
        assert r.status_code == 201, r.text
    seen = _count_statements(monkeypatch)
    one = (await client.get("/v1/creator-bindings", headers=agency.headers)).json()["items"]
    for_one = seen["statements"]
    for creator in creators[1:]:
        await invite_creator(client, agency, creator)
    seen.clear()
    many = (await client.get("/v1/creator-bindings", headers=agency.headers, params={"limit": 10})).json()["items"]
    assert len(one) == 1 and len(many) == 4
    # the page, then the strength and live counts of all its rows
    assert seen["statements"] == for_one == 2, seen
    facts = {b["creator_id"]: (b["live_count"], b["strong"]) for b in many}
    assert facts[creators[0].id] == (3, True)
    assert all(facts[c.id] == (None, True) for c in creators[1:])


async def test_pages_follow_their_cursor(client, factory: Factory):
    agency = await factory.user("agency")
    merchant = await factory.user("merchant")
    for i in range(5):
        await product(client, merchant, title=f"P{i}")
    await bind_shop(client, agency, merchant)
    everything = await pool(client, agency)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/product-pool", headers=agency.headers, params=params)).json()
        seen += [i["item_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [i["item_id"] for i in everything] and len(seen) == 5
    assert all(i["shop"]["id"] == merchant.id and i["product"]["shop_id"] == merchant.id for i in everything)
    r = await client.get("/v1/product-pool", headers=agency.headers, params={"cursor": "garbage"})
    assert r.status_code == 422
    creators = [await factory.user("creator") for _ in range(3)]
    for creator in creators:
        await invite_creator(client, agency, creator)
    first = (await client.get("/v1/creator-bindings", headers=agency.headers, params={"limit": 2})).json()
    second = (
        await client.get("/v1/creator-bindings", headers=agency.headers, params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    ids = [b["creator_id"] for b in first["items"] + second["items"]]
    assert ids == [c.id for c in reversed(creators)] and second["next_cursor"] is None


# -- races (PostgreSQL) ----------------------------------------------------------------------
@postgres_only
async def test_two_confirms_of_one_check_in_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        agency = await factory.user("agency")
        creator = await factory.user("creator")
        base = await make_base(client, agency)
        pending = await scan(client, creator, agency, base["id"])
        url = f"/v1/check-ins/{pending['id']}"
        answers = await asyncio.gather(*(client.post(f"{url}/confirm", headers=creator.headers) for _ in range(2)))
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        lost = next(r.json() for r in answers if r.status_code == 409)
        assert (lost["code"], lost["state"]) == ("invalid_transition", "checked_in")
        assert await _history(client, creator, url) == ["create", "confirm"]
        coops = (await client.get("/v1/cooperations", headers=creator.headers)).json()["items"]
        assert len(coops) == 1


@postgres_only
async def test_accept_and_revoke_of_one_shop_binding_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        agency = await factory.user("agency")
        merchant = await factory.user("merchant")
        await product(client, merchant)
        r = await client.post("/v1/shop-bindings", headers=agency.headers, json={"shop_id": merchant.id})
        url = f"/v1/shop-bindings/{r.json()['id']}"
        answers = await asyncio.gather(
            client.post(f"{url}/accept", headers=merchant.headers), client.post(f"{url}/revoke", headers=agency.headers)
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        state = next(r.json()["state"] for r in answers if r.status_code == 200)
        assert (await client.get(url, headers=agency.headers)).json()["state"] == state
        assert len(await _history(client, agency, url)) == 2
        assert len(await pool(client, agency)) == (1 if state == "active" else 0)


@postgres_only
async def test_both_sides_terminate_one_cooperation_one_wins(committed_client, committed_factory):
    client, factory = committed_client, committed_factory
    for _ in range(3):
        agency = await factory.user("agency")
        creator = await factory.user("creator")
        base = await make_base(client, agency)
        done = await check_in(client, creator, agency, base["id"])
        url = f"/v1/cooperations/{done['cooperation_id']}"
        answers = await asyncio.gather(
            client.post(f"{url}/terminate", headers=creator.headers), client.post(f"{url}/terminate", headers=agency.headers)
        )
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        assert await _history(client, agency, url) == ["create", "terminate"]
        assert await _history(client, creator, f"/v1/check-ins/{done['id']}") == ["create", "confirm", "check-out"]


@postgres_only
async def test_two_commission_changes_of_one_binding_one_wins(committed_client, committed_factory):
    """Two PATCHes read the same version: the second's UPDATE finds it moved and answers 409,
    so the stored commission is the winner's and the version stepped once."""
    client, factory = committed_client, committed_factory
    for _ in range(3):
        agency = await factory.user("agency")
        creator = await factory.user("creator")
        binding = await bind_creator(client, agency, creator)
        url = f"/v1/creator-bindings/{binding['id']}"
        answers = await asyncio.gather(
            client.patch(url, headers=agency.headers, json={"commission_bp": 1500}),
            client.patch(url, headers=agency.headers, json={"commission_bp": 2500}),
        )
        codes = sorted(r.status_code for r in answers)
        assert codes in ([200, 409], [200, 200]), [r.text for r in answers]
        seen = (await client.get(url, headers=agency.headers)).json()
        if codes == [200, 409]:
            won = next(r.json() for r in answers if r.status_code == 200)
            assert next(r.json() for r in answers if r.status_code == 409)["code"] == "conflict"
            assert (seen["commission_bp"], seen["version"]) == (won["commission_bp"], binding["version"] + 1)
        else:  # one ran after the other had committed: both applied, one version step each
            assert seen["version"] == binding["version"] + 2


@postgres_only
async def test_a_confirm_racing_the_end_of_its_cooperation_leaves_nobody_checked_in_under_it(committed_client, committed_factory):
    """The creator checked out of a cooperation and scans again: its confirm (under that
    cooperation) races the cooperation's termination. Either the check-in lands first and the
    termination checks it out, or the termination lands first and the confirm does not check in
    under the ended cooperation — never a creator present under an ended one (make stress's
    invariant, which the race broke)."""
    client, factory = committed_client, committed_factory
    for _ in range(4):
        agency = await factory.user("agency")
        creator = await factory.user("creator")
        base = await make_base(client, agency)
        first = await check_in(client, creator, agency, base["id"])
        r = await client.post(f"/v1/check-ins/{first['id']}/check-out", headers=creator.headers, json={})
        assert r.status_code == 200, r.text
        pending = await scan(client, creator, agency, base["id"])
        coop = f"/v1/cooperations/{first['cooperation_id']}"
        confirm, terminate = await asyncio.gather(
            client.post(f"/v1/check-ins/{pending['id']}/confirm", headers=creator.headers),
            client.post(f"{coop}/terminate", headers=agency.headers, json={}),
        )
        assert confirm.status_code in (200, 409) and terminate.status_code == 200, [confirm.text, terminate.text]
        now = (await client.get(f"/v1/check-ins/{pending['id']}", headers=creator.headers)).json()
        if now["state"] == "checked_in":
            assert now["cooperation_id"] != first["cooperation_id"], now  # a new cooperation, not the ended one
        assert (await client.get(coop, headers=agency.headers)).json()["state"] == "terminated"
