"""Service-provider incentives through HTTP: contracts, programs, the monthly computation,
publication, vouchers and redemption."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from tests.conftest import Factory

SH = ZoneInfo("Asia/Shanghai")


# -- helpers -----------------------------------------------------------------------------------
def month_str(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def add_months(month: str, delta: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def local(month: str, day: int = 1, hour: int = 12) -> datetime:
    return datetime.combine(date(int(month[:4]), int(month[5:]), day), time(hour), tzinfo=SH)


async def advance_to(factory: Factory, target: datetime) -> None:
    now = await factory.now()
    seconds = int((target - now).total_seconds()) + 1
    assert seconds > 0
    await factory.advance(seconds)


async def contract(client, provider, merchant, mode="commission_split") -> dict:
    r = await client.post("/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": mode})
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/provider-contracts/{r.json()['id']}/accept", headers=merchant.headers)
    assert r.status_code == 200, r.text
    return r.json()


class World:
    """A month M (the current business month) with a provider and its merchants:
    m1 commission_split: prev live GMV 100,000, this month 223,459 (+ a refunded and a video order)
    m2 commission_split: prev 300,000, this 200,000 (no increment)
    m3 service_fee: V4 this month, nothing before
    m4 commission_split: V3 this month, V2 two months before; no live session
    m5 service_fee: V3 this month, but V3 the month before (no jump)
    p2: an uncertified provider with m1 only."""


async def build_world(client, factory: Factory, *, coefficient_bp: int | None = 1000) -> World:
    w = World()
    w.op = await factory.operator()
    w.platform = await factory.user("platform")
    w.provider = await factory.user("service_provider", certified=True)
    w.p2 = await factory.user("service_provider", certified=False)
    w.m = [await factory.user("merchant") for _ in range(5)]
    m1, m2, m3, m4, m5 = w.m
    w.contracts = {}
    for merchant, mode in (
        (m1, "commission_split"),
        (m2, "commission_split"),
        (m3, "service_fee"),
        (m4, "commission_split"),
        (m5, "service_fee"),
    ):
        w.contracts[merchant.id] = await contract(client, w.provider, merchant, mode)
    await contract(client, w.p2, m1)
    now = await factory.now()
    w.month = month_str(now.astimezone(SH).date())
    prev = add_months(w.month, -1)
    products = {}
    for merchant in w.m:
        r = await client.post("/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10})
        products[merchant.id] = r.json()["id"]

    def order(ext, merchant, amount, when, channel="live", status="paid"):
        return {
            "external_id": ext,
            "shop_id": merchant.id,
            "product_id": products[merchant.id],
            "channel": channel,
            "amount_fen": amount,
            "status": status,
            "paid_at": when.isoformat(),
        }

    orders = [
        order("o1", m1, 100_000, local(prev, 2)),
        order("o2", m1, 200_000, local(w.month, 1, 9)),
        order("o3", m1, 23_459, local(w.month, 1, 10)),
        order("o4", m1, 10_000, local(w.month, 1, 11), status="refunded"),
        order("o5", m1, 50_000, local(w.month, 1, 11), channel="video"),
        order("o6", m2, 250_000, local(prev, 3)),
        # months are Asia/Shanghai months: 23:59:59 of the last day is the previous month,
        # 00:00 of the 1st is this one
        order("o7", m2, 50_000, local(w.month, 1, 0) - timedelta(seconds=1)),
        order("o8", m2, 200_000, local(w.month, 1, 0)),
        order("o9", m3, 999_999, local(w.month, 1, 13)),
    ]
    r = await client.post("/v1/ingest/orders", headers=w.platform.headers, json={"orders": orders})
    assert r.status_code == 200, r.text
    for i, merchant in enumerate((m1, m2, m3, m5)):
        r = await client.post(
            "/v1/ingest/live-sessions",
            headers=w.platform.headers,
            json={
                "external_id": f"ls-{merchant.id}",
                "host_id": merchant.id,
                "started_at": now.isoformat(),
                "peak_viewers": 5,
                "room_url": f"https://live.example/{i}",
            },
        )
        assert r.status_code == 201, r.text
    tiers = [
        (w.month, [(m3, 4), (m4, 3), (m5, 3)]),
        (add_months(w.month, -1), [(m5, 3), (m1, 2)]),
        (add_months(w.month, -2), [(m4, 2)]),
    ]
    for month, items in tiers:
        r = await client.post(
            "/v1/ingest/merchant-tiers",
            headers=w.platform.headers,
            json={"month": month, "tiers": [{"merchant_id": m.id, "tier": t} for m, t in items]},
        )
        assert r.status_code == 200, r.text
    body = {"name": "Q4", "month_from": add_months(w.month, -2), "month_to": add_months(w.month, 2)}
    if coefficient_bp is not None:
        body["coefficient_bp"] = coefficient_bp
    r = await client.post("/v1/incentive-programs", headers=w.op.headers, json=body)
    assert r.status_code == 201, r.text
    w.program = r.json()
    return w


async def compute(client, w: World, month: str | None = None, program_id: str | None = None):
    return await client.post(
        f"/v1/incentive-programs/{program_id or w.program['id']}/months/{month or w.month}/compute", headers=w.op.headers
    )


async def publish(client, w: World, month: str | None = None):
    return await client.post(f"/v1/incentive-programs/{w.program['id']}/months/{month or w.month}/publish", headers=w.op.headers)


async def statements(client, user, month) -> dict[str, dict]:
    r = await client.get("/v1/incentive-statements", headers=user.headers, params={"month": month})
    assert r.status_code == 200, r.text
    return {s["provider_id"]: s for s in r.json()["items"]}


async def vouchers(client, user, **params) -> list[dict]:
    r = await client.get("/v1/vouchers", headers=user.headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def published_world(client, factory: Factory) -> World:
    """The world computed and published at 01:00 on the 1st of the next month."""
    w = await build_world(client, factory)
    await advance_to(factory, local(add_months(w.month, 1), 1, 1))
    assert (await compute(client, w)).status_code == 200
    assert (await publish(client, w)).status_code == 200
    vs = await vouchers(client, w.provider)
    w.v1 = next(v for v in vs if v["dimension"] == 1)
    w.v2 = next(v for v in vs if v["dimension"] == 2)
    return w


def next_weekday(d: date, weekday: int) -> date:
    return d + timedelta(days=(weekday - d.weekday()) % 7 or 7)


# -- contracts ---------------------------------------------------------------------------------
async def test_contract_lifecycle_visibility_and_duplicates(client, factory: Factory):
    op = await factory.operator()
    provider = await factory.user("service_provider")
    merchant = await factory.user("merchant")
    stranger = await factory.user("merchant")
    other_provider = await factory.user("service_provider")
    r = await client.post(
        "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "commission_split"}
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["state"] == "proposed" and c["allowed_actions"] == [] and c["activated_at"] is None
    r = await client.post(
        "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    assert r.status_code == 409 and r.json()["code"] == "contract_exists"
    # merchants cannot propose, unknown merchants are refused
    r = await client.post(
        "/v1/provider-contracts", headers=merchant.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    assert r.status_code == 403
    r = await client.post(
        "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": provider.id, "mode": "service_fee"}
    )
    assert r.status_code == 422
    r = await client.post("/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "barter"})
    assert r.status_code == 422
    # visibility
    got = await client.get(f"/v1/provider-contracts/{c['id']}", headers=merchant.headers)
    assert got.status_code == 200 and got.json()["allowed_actions"] == ["accept", "decline"]
    assert (await client.get(f"/v1/provider-contracts/{c['id']}", headers=op.headers)).status_code == 200
    for outsider in (stranger, other_provider):
        assert (await client.get(f"/v1/provider-contracts/{c['id']}", headers=outsider.headers)).status_code == 404
        r = await client.post(f"/v1/provider-contracts/{c['id']}/accept", headers=outsider.headers)
        assert r.status_code == 404
    assert (await client.get("/v1/provider-contracts/pct_nope", headers=op.headers)).status_code == 404
    listed = (await client.get("/v1/provider-contracts", headers=stranger.headers)).json()
    assert listed["items"] == []
    r = await client.post(f"/v1/provider-contracts/{c['id']}/accept", headers=merchant.headers)
    assert r.status_code == 200 and r.json()["state"] == "active" and r.json()["activated_at"]
    r = await client.post(f"/v1/provider-contracts/{c['id']}/end", headers=provider.headers, json={})
    assert r.status_code == 422
    r = await client.post(f"/v1/provider-contracts/{c['id']}/end", headers=provider.headers, json={"reason": "moving on"})
    assert r.status_code == 200 and r.json()["state"] == "ended" and r.json()["end_reason"] == "moving on"
    # once ended a new proposal is possible
    r = await client.post(
        "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    assert r.status_code == 201
    new_id = r.json()["id"]
    mine = (await client.get("/v1/provider-contracts", headers=provider.headers, params={"state": "ended"})).json()
    assert [x["id"] for x in mine["items"]] == [c["id"]]
    both = (await client.get("/v1/provider-contracts", headers=merchant.headers)).json()
    assert [x["id"] for x in both["items"]] == [new_id, c["id"]]
    hist = (await client.get(f"/v1/provider-contracts/{c['id']}/history", headers=merchant.headers)).json()
    assert [(h["action"], h["to_state"]) for h in hist] == [("create", "proposed"), ("accept", "active"), ("end", "ended")]
    assert hist[2]["reason"] == "moving on" and hist[2]["actor_role"] == "service_provider"
    r = await client.get(f"/v1/provider-contracts/{c['id']}/history", headers=stranger.headers)
    assert r.status_code == 404
    r = await client.get("/v1/provider-contracts", headers=provider.headers, params={"state": "bogus"})
    assert r.status_code == 422


@pytest.mark.parametrize("state", ["proposed", "active", "declined", "ended"])
@pytest.mark.parametrize("action", ["accept", "decline", "end"])
async def test_contract_every_state_every_action(client, factory: Factory, state, action):
    provider = await factory.user("service_provider")
    merchant = await factory.user("merchant")
    r = await client.post(
        "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "service_fee"}
    )
    cid = r.json()["id"]
    path = f"/v1/provider-contracts/{cid}"
    if state in ("active", "ended"):
        assert (await client.post(f"{path}/accept", headers=merchant.headers)).status_code == 200
    if state == "ended":
        assert (await client.post(f"{path}/end", headers=merchant.headers, json={"reason": "x"})).status_code == 200
    if state == "declined":
        assert (await client.post(f"{path}/decline", headers=merchant.headers)).status_code == 200
    allowed = {("proposed", "accept"): "active", ("proposed", "decline"): "declined", ("active", "end"): "ended"}
    body = {"reason": "because"} if action == "end" else None
    actor = merchant
    r = await client.post(f"{path}/{action}", headers=actor.headers, json=body)
    if (state, action) in allowed:
        assert r.status_code == 200, r.text
        assert r.json()["state"] == allowed[(state, action)]
    else:
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
        assert r.json()["state"] == state
    if action in ("accept", "decline"):  # never the provider's to fire
        r = await client.post(f"{path}/{action}", headers=provider.headers)
        assert r.status_code == 403


# -- programs and the monthly computation ------------------------------------------------------
async def test_program_defaults_and_validation(client, factory: Factory):
    op = await factory.operator()
    provider = await factory.user("service_provider")
    r = await client.post(
        "/v1/incentive-programs", headers=op.headers, json={"name": "2026", "month_from": "2026-01", "month_to": "2026-12"}
    )
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["coefficient_bp"], p["v3_reward_fen"], p["v4_reward_fen"], p["min_active_merchants"]) == (
        1000,
        300_000,
        1_000_000,
        3,
    )
    r = await client.post(
        "/v1/incentive-programs", headers=op.headers, json={"name": "x", "month_from": "2026-12", "month_to": "2026-01"}
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/incentive-programs", headers=op.headers, json={"name": "x", "month_from": "2026-13", "month_to": "2026-14"}
    )
    assert r.status_code == 422
    r = await client.post(
        "/v1/incentive-programs", headers=provider.headers, json={"name": "x", "month_from": "2026-01", "month_to": "2026-02"}
    )
    assert r.status_code == 403
    listed = (await client.get("/v1/incentive-programs", headers=op.headers)).json()
    assert [x["id"] for x in listed["items"]] == [p["id"]]
    r = await client.post(f"/v1/incentive-programs/{p['id']}/months/2025-12/compute", headers=op.headers)
    assert r.status_code == 422 and r.json()["code"] == "month_outside_program"
    r = await client.post(f"/v1/incentive-programs/{p['id']}/months/2026-1/compute", headers=op.headers)
    assert r.status_code == 422
    r = await client.post("/v1/incentive-programs/ipg_nope/months/2026-01/compute", headers=op.headers)
    assert r.status_code == 404


async def test_worked_compute_example(client, factory: Factory):
    w = await build_world(client, factory)
    m1, m2, m3, m4, m5 = w.m
    r = await compute(client, w)
    assert r.status_code == 409 and r.json()["code"] == "month_not_over"
    await advance_to(factory, local(add_months(w.month, 1), 1, 1))
    r = await compute(client, w)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "program_id": w.program["id"],
        "month": w.month,
        "statements": 2,
        "eligible": 1,
        "total_fen": 1_312_345,
        "vouchers": 0,
    }
    mine = await statements(client, w.provider, w.month)
    assert list(mine) == [w.provider.id]  # a provider sees only its own
    s = mine[w.provider.id]
    assert s["state"] == "draft" and s["eligible"] is True and s["reasons"] == [] and s["active_merchants"] == 4
    d1 = {line["merchant_id"]: line for line in s["dimension1"]}
    # 223,459 − 100,000 = 123,459 × 10% = 12,345.9 → 12,345 (rounded down)
    assert d1[m1.id] == {
        "merchant_id": m1.id,
        "gmv_prev_fen": 100_000,
        "gmv_fen": 223_459,
        "increment_fen": 123_459,
        "voucher_fen": 12_345,
    }
    assert d1[m2.id] == {"merchant_id": m2.id, "gmv_prev_fen": 300_000, "gmv_fen": 200_000, "increment_fen": 0, "voucher_fen": 0}
    assert d1[m4.id]["voucher_fen"] == 0 and m3.id not in d1 and m5.id not in d1  # service_fee: no dimension 1
    assert sorted((x["merchant_id"], x["tier"], x["reward_fen"]) for x in s["dimension2"]) == sorted(
        [(m3.id, 4, 1_000_000), (m4.id, 3, 300_000)]
    )
    assert s["total_fen"] == 12_345 + 1_000_000 + 300_000
    everyone = await statements(client, w.op, w.month)
    bad = everyone[w.p2.id]
    assert bad["eligible"] is False and bad["reasons"] == ["not_certified", "too_few_active_merchants"]
    assert bad["dimension1"] == bad["dimension2"] == [] and bad["total_fen"] == 0 and bad["active_merchants"] == 1
    merchant = w.m[0]
    r = await client.get("/v1/incentive-statements", headers=merchant.headers)
    assert r.status_code == 403


async def test_recompute_replaces_drafts_and_published_is_frozen(client, factory: Factory):
    w = await build_world(client, factory)
    await advance_to(factory, local(add_months(w.month, 1), 1, 1))
    assert (await compute(client, w)).status_code == 200
    first = (await statements(client, w.op, w.month))[w.provider.id]
    # a late order and an ended contract change the draft when computed again
    product = (
        await client.post("/v1/products", headers=w.m[0].headers, json={"title": "late", "price_fen": 1, "inventory": 1})
    ).json()["id"]
    r = await client.post(
        "/v1/ingest/orders",
        headers=w.platform.headers,
        json={
            "orders": [
                {
                    "external_id": "late",
                    "shop_id": w.m[0].id,
                    "product_id": product,
                    "channel": "live",
                    "amount_fen": 10_000,
                    "status": "paid",
                    "paid_at": local(w.month, 2).isoformat(),
                }
            ]
        },
    )
    assert r.status_code == 200
    r = await compute(client, w)
    assert r.status_code == 200 and r.json()["total_fen"] == 1_313_345
    again = (await statements(client, w.op, w.month))[w.provider.id]
    assert again["id"] == first["id"] and again["state"] == "draft"
    assert {x["merchant_id"]: x["voucher_fen"] for x in again["dimension1"]}[w.m[0].id] == 13_345
    assert len(await statements(client, w.op, w.month)) == 2
    r = await publish(client, w)
    assert r.status_code == 200, r.text
    assert r.json()["vouchers"] == 2 and r.json()["total_fen"] == 1_313_345
    r = await compute(client, w)
    assert r.status_code == 409 and r.json()["code"] == "month_published"
    r = await publish(client, w)
    assert r.status_code == 409 and r.json()["code"] == "month_published"
    s = (await statements(client, w.op, w.month))[w.provider.id]
    assert s["state"] == "published" and s["published_at"] and s["total_fen"] == 1_313_345
    r = await client.post(
        f"/v1/incentive-programs/{w.program['id']}/months/{add_months(w.month, -1)}/publish", headers=w.op.headers
    )
    assert r.status_code == 409 and r.json()["code"] == "month_not_computed"


async def test_dimension2_counts_a_merchant_once_a_year(client, factory: Factory):
    w = await build_world(client, factory)
    await advance_to(factory, local(add_months(w.month, 1), 1, 1))
    assert (await compute(client, w)).status_code == 200
    # recomputing the same draft keeps the award (its own drafts are replaced)
    assert (await compute(client, w)).status_code == 200
    s = (await statements(client, w.op, w.month))[w.provider.id]
    assert len(s["dimension2"]) == 2
    r = await client.post(
        "/v1/incentive-programs", headers=w.op.headers, json={"name": "other", "month_from": w.month, "month_to": w.month}
    )
    other = r.json()["id"]
    assert (await compute(client, w, program_id=other)).status_code == 200
    r = await client.get("/v1/incentive-statements", headers=w.op.headers, params={"month": w.month})
    mine = [x for x in r.json()["items"] if x["program_id"] == other and x["provider_id"] == w.provider.id][0]
    assert mine["dimension2"] == []  # m3 and m4 already counted this year
    assert mine["total_fen"] == 12_345


async def test_export_csv_and_xlsx(client, factory: Factory):
    w = await build_world(client, factory)
    await advance_to(factory, local(add_months(w.month, 1), 1, 1))
    assert (await compute(client, w)).status_code == 200
    r = await client.get("/v1/incentive-statements/export", headers=w.op.headers, params={"month": w.month, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    mine = [x for x in rows if x["provider_id"] == w.provider.id]
    assert len(mine) == 5  # three dimension-1 merchants, two dimension-2 merchants
    assert {x["amount_fen"] for x in mine if x["merchant_id"] == w.m[0].id} == {"12345"}
    assert [x["reasons"] for x in rows if x["provider_id"] == w.p2.id] == ["not_certified;too_few_active_merchants"]
    r = await client.get(
        "/v1/incentive-statements/export", headers=w.provider.headers, params={"month": w.month, "format": "xlsx"}
    )
    assert r.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "statement_id" and len(values) == 1 + 5
    assert all(v[2] == w.provider.id for v in values[1:])
    r = await client.get("/v1/incentive-statements/export", headers=w.op.headers, params={"format": "pdf"})
    assert r.status_code == 422


# -- publication and vouchers ------------------------------------------------------------------
async def test_publish_issues_vouchers_expiring_after_30_days(client, factory: Factory):
    w = await published_world(client, factory)
    published_at = await factory.now()
    assert w.v1["merchant_id"] == w.m[0].id and w.v1["amount_fen"] == w.v1["remaining_fen"] == 12_345
    assert w.v2["merchant_id"] is None and w.v2["amount_fen"] == 1_300_000
    expires = datetime.fromisoformat(w.v1["expires_at"])
    # published on the 1st at 01:00: 30 days is earlier than the 10th of the next month
    assert abs((expires - published_at).total_seconds() - 30 * 86400) < 60
    assert len(await vouchers(client, w.p2)) == 0
    assert len(await vouchers(client, w.op, state="available")) == 2
    await advance_to(factory, expires)
    assert {v["state"] for v in await vouchers(client, w.provider)} == {"expired"}
    assert await vouchers(client, w.provider, state="available") == []


async def test_publish_late_expires_on_the_10th(client, factory: Factory):
    w = await build_world(client, factory)
    following = add_months(w.month, 1)
    await advance_to(factory, local(following, 20, 9))
    assert (await compute(client, w)).status_code == 200
    assert (await publish(client, w)).status_code == 200
    v = (await vouchers(client, w.provider))[0]
    tenth = datetime.combine(date(int(add_months(w.month, 2)[:4]), int(add_months(w.month, 2)[5:]), 10), time(0), tzinfo=SH)
    assert datetime.fromisoformat(v["expires_at"]) == tenth
    await advance_to(factory, tenth - timedelta(seconds=120))
    assert {x["state"] for x in await vouchers(client, w.provider)} == {"available"}
    await advance_to(factory, tenth)
    assert {x["state"] for x in await vouchers(client, w.provider)} == {"expired"}
    r = await client.post(
        f"/v1/vouchers/{v['id']}/redemptions",
        headers=w.provider.headers,
        json={"merchant_id": w.m[0].id, "amount_fen": 1, "use_date": str((tenth + timedelta(days=10)).date())},
    )
    assert r.status_code == 409 and r.json()["code"] == "voucher_not_available"


# -- redemption --------------------------------------------------------------------------------
async def test_working_day_rule_around_a_weekend_and_a_holiday(client, factory: Factory):
    w = await published_world(client, factory)
    today = (await factory.now()).astimezone(SH).date()
    friday = next_weekday(today, 4)
    await advance_to(factory, datetime.combine(friday, time(10), tzinfo=SH))
    mon, tue, wed, thu = (friday + timedelta(days=n) for n in (3, 4, 5, 6))

    async def ask(use_date: date, amount=100):
        return await client.post(
            f"/v1/vouchers/{w.v2['id']}/redemptions",
            headers=w.provider.headers,
            json={"merchant_id": w.m[2].id, "amount_fen": amount, "use_date": str(use_date)},
        )

    # Friday's request: Sat and Sun do not count; Mon, Tue, Wed do
    r = await ask(tue)
    assert r.status_code == 422 and r.json()["code"] == "notice_too_short"
    assert (await ask(wed)).status_code == 201
    r = await client.put("/v1/admin/holidays", headers=w.op.headers, json={"dates": [str(mon), str(mon)]})
    assert r.status_code == 200 and r.json() == {"dates": [str(mon)]}
    listed = await client.get("/v1/admin/holidays", headers=w.op.headers)  # what PUT takes back
    assert listed.status_code == 200 and listed.json() == {"dates": [str(mon)]}
    assert (await client.put("/v1/admin/holidays", headers=w.op.headers, json=listed.json())).json() == listed.json()
    assert (await client.get("/v1/admin/holidays", headers=w.provider.headers)).status_code == 403
    assert (await ask(wed)).json()["code"] == "notice_too_short"
    assert (await ask(thu)).status_code == 201
    r = await client.put("/v1/admin/holidays", headers=w.provider.headers, json={"dates": []})
    assert r.status_code == 403
    assert (await client.put("/v1/admin/holidays", headers=w.op.headers, json={"dates": []})).json() == {"dates": []}
    assert (await ask(wed)).status_code == 201
    assert (await ask(friday)).json()["code"] == "notice_too_short"
    assert (await ask(friday - timedelta(days=1))).json()["code"] == "notice_too_short"


async def test_redemption_rules(client, factory: Factory):
    w = await published_world(client, factory)
    m1, m2, m3, m4, m5 = w.m
    stranger = await factory.user("merchant")
    expires = datetime.fromisoformat(w.v1["expires_at"])
    now = await factory.now()
    use = (now + timedelta(days=10)).astimezone(SH).date()

    async def ask(voucher, merchant, amount, use_date=use, who=w.provider):
        return await client.post(
            f"/v1/vouchers/{voucher['id']}/redemptions",
            headers=who.headers,
            json={"merchant_id": merchant.id, "amount_fen": amount, "use_date": str(use_date)},
        )

    r = await ask(w.v1, m1, 100, use_date=expires.astimezone(SH).date() + timedelta(days=1))
    assert r.status_code == 422 and r.json()["code"] == "voucher_expires_first"
    r = await ask(w.v1, stranger, 100)
    assert r.status_code == 409 and r.json()["code"] == "merchant_not_contracted"
    r = await ask(w.v1, m2, 100)
    assert r.status_code == 409 and r.json()["code"] == "voucher_bound_to_other_merchant"
    r = await ask(w.v1, m1, 12_346)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"
    assert (await ask(w.v1, m1, 100, who=w.p2)).status_code == 404
    assert (await ask(w.v1, m1, 0)).status_code == 422
    r = await ask(w.v1, m1, 5_000)
    assert r.status_code == 201 and r.json()["state"] == "requested"
    # the dimension-2 voucher serves any contracted merchant
    assert (await ask(w.v2, m5, 1_000)).status_code == 201
    # the bound merchant's contract ends after issuance: the voucher may serve another merchant
    r = await client.post(f"/v1/provider-contracts/{w.contracts[m1.id]['id']}/end", headers=m1.headers, json={"reason": "done"})
    assert r.status_code == 200
    r = await ask(w.v1, m1, 100)
    assert r.status_code == 409 and r.json()["code"] == "merchant_not_contracted"
    r = await ask(w.v1, m2, 7_345)
    assert r.status_code == 201, r.text
    v1 = next(v for v in await vouchers(client, w.provider) if v["id"] == w.v1["id"])
    assert v1["remaining_fen"] == 0 and v1["state"] == "available"
    r = await ask(w.v1, m2, 1)
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"


async def test_redemption_flow_partial_reject_fulfil_and_used_up(client, factory: Factory):
    w = await published_world(client, factory)
    m1 = w.m[0]
    now = await factory.now()
    use = (now + timedelta(days=10)).astimezone(SH).date()

    async def ask(amount):
        r = await client.post(
            f"/v1/vouchers/{w.v1['id']}/redemptions",
            headers=w.provider.headers,
            json={"merchant_id": m1.id, "amount_fen": amount, "use_date": str(use)},
        )
        assert r.status_code == 201, r.text
        return r.json()

    def remaining():
        return vouchers(client, w.provider)

    a, b, c = await ask(2_345), await ask(4_000), await ask(6_000)
    v = next(x for x in await remaining() if x["id"] == w.v1["id"])
    assert v["remaining_fen"] == 0
    # visibility: the provider, the merchant and operators see it; others do not
    assert (await client.get(f"/v1/redemptions/{a['id']}", headers=m1.headers)).status_code == 200
    assert (await client.get(f"/v1/redemptions/{a['id']}", headers=w.p2.headers)).status_code == 404
    assert (await client.get(f"/v1/redemptions/{a['id']}", headers=w.m[1].headers)).status_code == 404
    got = (await client.get(f"/v1/redemptions/{a['id']}", headers=w.op.headers)).json()
    assert got["allowed_actions"] == ["approve", "reject"]
    # reject returns the amount
    r = await client.post(f"/v1/redemptions/{c['id']}/reject", headers=w.op.headers, json={"reason": "no slot"})
    assert r.status_code == 200 and r.json()["state"] == "rejected" and r.json()["reject_reason"] == "no slot"
    assert next(x for x in await remaining() if x["id"] == w.v1["id"])["remaining_fen"] == 6_000
    r = await client.post(f"/v1/redemptions/{a['id']}/approve", headers=w.provider.headers)
    assert r.status_code == 403
    r = await client.post(f"/v1/redemptions/{a['id']}/approve", headers=w.op.headers)
    assert r.status_code == 200 and r.json()["state"] == "approved"
    r = await client.post(f"/v1/redemptions/{a['id']}/fulfil", headers=w.op.headers)
    assert r.status_code == 200 and r.json()["state"] == "redeemed" and r.json()["redeemed_at"]
    d = await ask(6_000)
    for rid in (b["id"], d["id"]):
        assert (await client.post(f"/v1/redemptions/{rid}/approve", headers=w.op.headers)).status_code == 200
    # the timer redeems approved redemptions at 00:00 of the use date; the voucher is then used up
    await advance_to(factory, datetime.combine(use, time(0), tzinfo=SH))
    for rid in (b["id"], d["id"]):
        got = (await client.get(f"/v1/redemptions/{rid}", headers=w.provider.headers)).json()
        assert got["state"] == "redeemed"
    v = next(x for x in await remaining() if x["id"] == w.v1["id"])
    assert v["state"] == "used_up" and v["remaining_fen"] == 0
    assert v["amount_fen"] == 12_345
    assert [x["id"] for x in await vouchers(client, w.provider, state="used_up")] == [w.v1["id"]]
    r = await client.post(
        f"/v1/vouchers/{w.v1['id']}/redemptions",
        headers=w.provider.headers,
        json={"merchant_id": m1.id, "amount_fen": 1, "use_date": str(use + timedelta(days=7))},
    )
    assert r.status_code == 409 and r.json()["code"] == "voucher_not_available"
    hist = await client.get("/v1/events", headers=w.provider.headers, params={"limit": 100})
    types = {e["type"] for e in hist.json()["items"]}
    assert {"voucher.created", "voucher.exhausted", "redemption.fulfilled", "redemption.approved"} <= types


@pytest.mark.parametrize("state", ["requested", "approved", "redeemed", "rejected"])
@pytest.mark.parametrize("action", ["approve", "reject", "fulfil"])
async def test_redemption_every_state_every_action(client, factory: Factory, state, action):
    w = await published_world(client, factory)
    use = ((await factory.now()) + timedelta(days=10)).astimezone(SH).date()
    r = await client.post(
        f"/v1/vouchers/{w.v2['id']}/redemptions",
        headers=w.provider.headers,
        json={"merchant_id": w.m[0].id, "amount_fen": 1_000, "use_date": str(use)},
    )
    rid = r.json()["id"]
    path = f"/v1/redemptions/{rid}"
    steps = {"requested": [], "approved": ["approve"], "redeemed": ["approve", "fulfil"], "rejected": ["reject"]}
    for step in steps[state]:
        body = {"reason": "r"} if step == "reject" else None
        assert (await client.post(f"{path}/{step}", headers=w.op.headers, json=body)).status_code == 200
    allowed = {
        ("requested", "approve"): "approved",
        ("requested", "reject"): "rejected",
        ("approved", "reject"): "rejected",
        ("approved", "fulfil"): "redeemed",
    }
    body = {"reason": "r"} if action == "reject" else None
    r = await client.post(f"{path}/{action}", headers=w.op.headers, json=body)
    if (state, action) in allowed:
        assert r.status_code == 200, r.text
        assert r.json()["state"] == allowed[(state, action)]
    else:
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition" and r.json()["state"] == state
    remaining = next(v for v in await vouchers(client, w.provider) if v["id"] == w.v2["id"])["remaining_fen"]
    final = allowed.get((state, action), state)
    assert remaining == 1_300_000 - (0 if final == "rejected" else 1_000)


async def test_machines_are_listed(client, factory: Factory):
    op = await factory.operator()
    machines = {m["name"]: m for m in (await client.get("/v1/state-machines", headers=op.headers)).json()}
    assert set(machines["provider_contract"]["states"]) == {"proposed", "active", "declined", "ended"}
    assert set(machines["incentive_statement"]["states"]) == {"draft", "published"}
    assert set(machines["voucher"]["states"]) == {"available", "used_up", "expired"}
    assert set(machines["redemption"]["states"]) == {"requested", "approved", "redeemed", "rejected"}


async def test_demo_step_is_idempotent(client, factory: Factory, db):
    from app.db.models.accounts import Account
    from app.demo.incentives import demo_step as _demo

    provider = await factory.user("service_provider")
    merchant = await factory.user("merchant")
    async with db() as session:
        accounts = {"provider": await session.get(Account, provider.id), "merchant": await session.get(Account, merchant.id)}
        assert len(await _demo(session, accounts)) == 2
        assert await _demo(session, accounts) == []
        await session.commit()
    listed = (await client.get("/v1/provider-contracts", headers=merchant.headers)).json()["items"]
    assert [c["state"] for c in listed] == ["active"] and listed[0]["allowed_actions"] == ["end"]
