"""Task orders through HTTP: creation rules, escrow, the machine, timers, live linking,
compensation, disputes, lists."""

from __future__ import annotations

import math
from datetime import timedelta

import httpx
from sqlalchemy import select

from app.db.models.platform import Notification, SmsMessage
from app.state import clock
from tests.conftest import Factory
from tests.test_task_orders_support import (
    CANCEL,
    act,
    create_order,
    iso,
    ledger_invariants,
    live,
    minute,
    order,
    order_body,
    ready_merchant,
    wallet,
)


async def test_creation_freezes_exactly_the_amount_and_notifies(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator", quotes={"dedicated_hourly_fen": 100_000, "shared_hourly_fen": 40_000})
    now = await factory.now()
    before = await wallet(client, merchant)
    created = await create_order(client, merchant, creator, product, minute(now + timedelta(days=2)), hours=3)
    assert created["amount_fen"] == 300_000 and created["hourly_fen"] == 100_000
    assert created["state"] == "pending_acceptance" and created["status"] == "pending_acceptance"
    assert created["sub_status"] is None and created["version"] >= 1
    assert created["allowed_actions"] == ["remind", "cancel"]
    assert created["hold_status"] == "held"
    after = await wallet(client, merchant)
    assert after["available_fen"] == before["available_fen"] - 300_000
    assert after["frozen_fen"] == before["frozen_fen"] + 300_000
    assert after["total_fen"] == before["total_fen"]
    seen = await order(client, creator, created["id"])
    assert seen["allowed_actions"] == ["accept", "reject"]
    from datetime import datetime

    assert datetime.fromisoformat(seen["accept_deadline"]) - datetime.fromisoformat(seen["created_at"]) == timedelta(hours=24)
    async with factory.maker() as session:
        notes = list(await session.scalars(select(Notification).where(Notification.account_id == creator.id)))
        sms = list(await session.scalars(select(SmsMessage).where(SmsMessage.account_id == creator.id)))
        assert [n.kind for n in notes] == ["task_order.created"] and len(sms) == 1
        assert sms[0].phone == "13800138000"
        await session.rollback()
    # shared session uses the shared quote
    shared = await create_order(
        client, merchant, creator, product, minute(now + timedelta(days=2)), hours=2, session_type="shared"
    )
    assert shared["amount_fen"] == 80_000
    await ledger_invariants(factory.maker)


async def test_creation_validation(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    other, other_product = await ready_merchant(client, factory)
    now = await factory.now()
    start = minute(now + timedelta(days=1))

    async def post(**changes):
        body = order_body(creator, product, start)
        body.update(changes)
        return await client.post("/v1/task-orders", headers=merchant.headers, json=body)

    # titles: Chinese, letters, digits, punctuation (incl. full-width) pass
    assert (await post(title="双11大促，ABC-123！")).status_code == 201
    for bad_title in ("", "一" * 21, "带货🔥专场", "tab\there", "line\nbreak", "price+1", " 前导空格"):
        r = await post(title=bad_title)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][:2] == ["body", "title"], bad_title
    assert (await post(title="一" * 20)).status_code == 201
    for phone in ("12812345678", "1391234567", "139123456789", "+8613912345678", "23912345678"):
        assert (await post(contact_phone=phone)).status_code == 422, phone
    assert (await post(contact_name="")).status_code == 422
    assert (await post(contact_name="名" * 21)).status_code == 422
    assert (await post(expected_start_at=iso(start + timedelta(seconds=30)))).status_code == 422
    r = await post(expected_start_at=iso(minute(now - timedelta(minutes=5))))
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "expected_start_at"]
    assert (await post(expected_start_at="2030-01-01T10:00:00")).status_code == 422  # no zone
    assert (await post(expected_start_at=iso(minute(now + timedelta(days=366))))).status_code == 422
    assert (await post(expected_start_at="9999-12-31T23:59:00Z")).status_code == 422
    for hours in (0, 25):
        assert (await post(hours=hours)).status_code == 422
    assert (await post(session_type="group")).status_code == 422
    assert (await post(products=[])).status_code == 422
    many = [{"product_id": f"prd_{i}", "plan": "targeted", "commission_bp": 100} for i in range(21)]
    assert (await post(products=many)).status_code == 422
    # another shop's product; unknown product; duplicates
    r = await post(products=[{"product_id": other_product, "plan": "general"}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "products", 0, "product_id"]
    assert (await post(products=[{"product_id": product, "plan": "general"}] * 2)).status_code == 422
    # targeted rates 0–8000 and required
    assert (await post(products=[{"product_id": product, "plan": "targeted", "commission_bp": 8001}])).status_code == 422
    assert (await post(products=[{"product_id": product, "plan": "targeted"}])).status_code == 422
    assert (await post(products=[{"product_id": product, "plan": "targeted", "commission_bp": 8000}])).status_code == 201
    # general: the product's own rate
    assert (await post(products=[{"product_id": product, "plan": "general", "commission_bp": 99}])).status_code == 422
    no_plan = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "x", "price_fen": 1, "inventory": 1})
    ).json()["id"]
    r = await post(products=[{"product_id": no_plan, "plan": "general"}])
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "products", 0, "plan"]
    await client.patch(f"/v1/products/{no_plan}", headers=merchant.headers, json={"status": "off_sale"})
    r = await post(products=[{"product_id": no_plan, "plan": "targeted", "commission_bp": 10}])
    assert r.status_code == 422 and r.json()["code"] == "product_off_sale"
    # the creator: unknown, not a creator
    assert (await post(creator_id=other.id)).status_code == 422
    assert (await post(creator_id="acc_nope")).status_code == 422
    assert (await post(unknown_field=1)).status_code == 422
    # only merchants create
    r = await client.post("/v1/task-orders", headers=creator.headers, json=order_body(creator, product, start))
    assert r.status_code == 403


async def test_conflicts_on_creation(client, factory: Factory):
    now = await factory.now()
    start = minute(now + timedelta(days=1))
    creator = await factory.user("creator")
    resting = await factory.user("creator", accepting_orders=False)
    # not bound to Xingtu
    unbound = await factory.user("merchant")
    product = (
        await client.post(
            "/v1/products",
            headers=unbound.headers,
            json={"title": "p", "price_fen": 1, "inventory": 1, "general_commission_bp": 100},
        )
    ).json()["id"]
    r = await client.post("/v1/task-orders", headers=unbound.headers, json=order_body(creator, product, start))
    assert r.status_code == 409 and r.json()["code"] == "xingtu_not_bound"
    # resting creator
    merchant, product = await ready_merchant(client, factory, amount=250_000)
    r = await client.post("/v1/task-orders", headers=merchant.headers, json=order_body(resting, product, start))
    assert r.status_code == 409 and r.json()["code"] == "creator_resting"
    # insufficient balance: 300,000 needed, 250,000 available, nothing written
    r = await client.post("/v1/task-orders", headers=merchant.headers, json=order_body(creator, product, start))
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"
    assert r.json()["required_fen"] == 300_000 and r.json()["available_fen"] == 250_000
    assert await wallet(client, merchant) == {
        "account_id": merchant.id,
        "available_fen": 250_000,
        "frozen_fen": 0,
        "total_fen": 250_000,
    }
    assert (await client.get("/v1/task-orders", headers=merchant.headers)).json()["items"] == []
    # exactly enough is fine
    r = await client.post("/v1/task-orders", headers=merchant.headers, json=order_body(creator, product, start, hours=2))
    assert r.status_code == 201 and (await wallet(client, merchant))["available_fen"] == 50_000


async def test_timeout_after_24h_releases_the_hold(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    now = await factory.now()
    created = await create_order(client, merchant, creator, product, minute(now + timedelta(days=3)))
    await factory.advance(24 * 3600 - 60)
    assert (await order(client, merchant, created["id"]))["state"] == "pending_acceptance"
    await factory.advance(120)
    seen = await order(client, merchant, created["id"])
    assert seen["state"] == "cancelled_timeout" and seen["status"] == "cancelled"
    assert seen["sub_status"] == "creator_timeout" and seen["hold_status"] == "released"
    assert await wallet(client, merchant) == {
        "account_id": merchant.id,
        "available_fen": 1_000_000,
        "frozen_fen": 0,
        "total_fen": 1_000_000,
    }
    history = (await client.get(f"/v1/task-orders/{created['id']}/history", headers=merchant.headers)).json()
    assert history[-1]["actor_id"] == "system" and history[-1]["to_state"] == "cancelled_timeout"
    r = await act(client, creator, created["id"], "accept")
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    await ledger_invariants(factory.maker)


async def test_live_flow_auto_approves_after_7_days(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    targeted = (
        await client.post(
            "/v1/products", headers=merchant.headers, json={"title": "定向商品", "price_fen": 5000, "inventory": 10}
        )
    ).json()["id"]
    creator = await factory.user("creator")
    platform = await factory.user("platform")
    now = await factory.now()
    start = minute(now + timedelta(days=1))
    created = await create_order(
        client,
        merchant,
        creator,
        product,
        start,
        products=[
            {"product_id": product, "plan": "general"},
            {"product_id": targeted, "plan": "targeted", "commission_bp": 2500},
        ],
    )
    assert [p["commission_bp"] for p in created["products"]] == [1500, 2500]
    r = await act(client, creator, created["id"], "accept")
    assert r.status_code == 200 and r.json()["state"] == "waiting_live"
    assert r.json()["status"] == "in_progress" and r.json()["sub_status"] == "waiting_live"
    plans = (await client.get("/v1/targeted-plans", headers=merchant.headers)).json()["items"]
    assert [(p["product_id"], p["commission_bp"], p["task_order_id"]) for p in plans] == [(targeted, 2500, created["id"])]
    assert (await client.get("/v1/targeted-plans", headers=creator.headers)).json()["items"][0]["id"] == plans[0]["id"]
    # a session outside the window does not link; one inside does
    await live(client, platform, creator, "too-early", start - timedelta(hours=2, minutes=1))
    assert (await order(client, merchant, created["id"]))["state"] == "waiting_live"
    session = await live(client, platform, creator, "ls-ok", start + timedelta(minutes=10))
    seen = await order(client, merchant, created["id"])
    assert seen["state"] == "live" and seen["sub_status"] == "live"
    assert seen["watch"]["room_url"] == "https://live.example/room/1"
    link = httpx.URL(seen["watch"]["qr_svg_url"])
    assert link.path == f"/v1/live-sessions/{session['id']}/qr.svg" and link.host == "test"  # the request's host
    # a signed link: it works in an <img>, with no bearer token; changed, it is 403
    picture = await client.get(seen["watch"]["qr_svg_url"])
    assert picture.status_code == 200 and picture.headers["content-type"].startswith("image/svg+xml")
    tampered = link.copy_set_param("u", creator.id)
    assert (await client.get(str(tampered))).status_code == 403
    # sales in the session: GMV counts the order's products, paid minus refunded
    other_product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "不在任务里", "price_fen": 1, "inventory": 1})
    ).json()["id"]
    orders = [
        {
            "external_id": f"so-{i}",
            "shop_id": merchant.id,
            "product_id": pid,
            "creator_id": creator.id,
            "channel": "live",
            "live_session_id": "ls-ok",
            "amount_fen": amount,
            "status": status,
            "paid_at": iso(start + timedelta(minutes=20)),
        }
        for i, (pid, amount, status) in enumerate(
            [(product, 10_000, "paid"), (targeted, 5_000, "paid"), (product, 700, "refunded"), (other_product, 999, "paid")]
        )
    ]
    await factory.advance_to(start + timedelta(minutes=20))  # orders are pushed once paid
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": orders})
    assert r.status_code == 200, r.text
    detail = await order(client, merchant, created["id"])
    assert [(s["id"], s["gmv_fen"], s["peak_viewers"]) for s in detail["live_sessions"]] == [(session["id"], 15_000, 1234)]
    qr = await client.get(f"/v1/live-sessions/{session['id']}/qr.svg", headers=merchant.headers)
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml") and "<svg" in qr.text
    stranger = await factory.user("merchant")
    assert (await client.get(f"/v1/live-sessions/{session['id']}/qr.svg", headers=stranger.headers)).status_code == 404
    # end → pending_review, review deadline = end + 7 days
    end = start + timedelta(hours=3)
    await live(client, platform, creator, "ls-ok", start + timedelta(minutes=10), ended=end)
    seen = await order(client, merchant, created["id"])
    assert seen["state"] == "pending_review" and seen["allowed_actions"] == ["approve", "cancel"]
    assert seen["review_deadline"].replace("Z", "+00:00").startswith(iso(end + timedelta(days=7))[:16])
    creator_before = await wallet(client, creator)
    until_deadline = (end + timedelta(days=7) - await factory.now()).total_seconds()
    await factory.advance(int(until_deadline) - 60)
    assert (await order(client, merchant, created["id"]))["state"] == "pending_review"
    await factory.advance(120)
    seen = await order(client, creator, created["id"])
    assert seen["state"] == "completed" and seen["status"] == "completed" and seen["hold_status"] == "paid"
    assert (await wallet(client, creator))["available_fen"] == creator_before["available_fen"] + 300_000
    assert await wallet(client, merchant) == {
        "account_id": merchant.id,
        "available_fen": 700_000,
        "frozen_fen": 0,
        "total_fen": 700_000,
    }
    history = (await client.get(f"/v1/task-orders/{created['id']}/history", headers=merchant.headers)).json()
    assert [(h["action"], h["actor_id"] == "system") for h in history] == [
        ("create", False),
        ("accept", False),
        ("start", True),
        ("end", True),
        ("auto_approve", True),
    ]
    await ledger_invariants(factory.maker)


async def test_approve_reject_and_creator_cancel(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    platform = await factory.user("platform")
    now = await factory.now()
    start = minute(now + timedelta(days=1))
    # approve pays the creator
    a = await create_order(client, merchant, creator, product, start, hours=1)
    await act(client, creator, a["id"], "accept")
    await live(client, platform, creator, "ls-a", start, ended=start + timedelta(hours=1))
    r = await act(client, merchant, a["id"], "approve")
    assert r.status_code == 200 and r.json()["state"] == "completed" and r.json()["creator_received_fen"] == 100_000
    # the live above moved the clock to `start`: the next orders are booked a day later
    later = start + timedelta(days=1)
    # reject releases, no targeted plan
    b = await create_order(
        client,
        merchant,
        creator,
        product,
        later,
        hours=1,
        products=[{"product_id": product, "plan": "targeted", "commission_bp": 3000}],
    )
    r = await act(client, creator, b["id"], "reject", {"reason": "档期已满"})
    assert r.status_code == 200 and r.json()["state"] == "cancelled_rejected"
    assert r.json()["sub_status"] == "creator_rejected" and r.json()["hold_status"] == "released"
    assert (await client.get("/v1/targeted-plans", headers=merchant.headers)).json()["items"] == []
    # the creator cancels after accepting: all back to the merchant
    c = await create_order(client, merchant, creator, product, later, hours=2)
    await act(client, creator, c["id"], "accept")
    r = await act(client, creator, c["id"], "cancel", {"reason": {"code": "health", "note": "生病"}})
    assert r.status_code == 200 and r.json()["state"] == "cancelled_by_creator"
    assert r.json()["sub_status"] == "creator_cancelled" and r.json()["compensation_fen"] == 0
    assert r.json()["cancel_reason"] == {"code": "health", "note": "生病"} and r.json()["cancelled_by"] == "creator"
    assert await wallet(client, merchant) == {
        "account_id": merchant.id,
        "available_fen": 900_000,
        "frozen_fen": 0,
        "total_fen": 900_000,
    }
    assert (await wallet(client, creator))["available_fen"] == 100_000
    # reasons: a creator may not use a merchant-only reason; "other" needs a note
    d = await create_order(client, merchant, creator, product, later, hours=1)
    await act(client, creator, d["id"], "accept")
    r = await act(client, creator, d["id"], "cancel", {"reason": {"code": "budget_changed"}})
    assert r.status_code == 422
    r = await act(client, merchant, d["id"], "cancel", {"reason": {"code": "other"}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "reason", "note"]
    assert (await act(client, merchant, d["id"], "cancel")).status_code == 422
    reasons = (await client.get("/v1/task-orders/cancel-reasons", headers=merchant.headers)).json()
    assert {"schedule_changed", "other"} <= {r["code"] for r in reasons}
    await ledger_invariants(factory.maker)


async def test_remind_once_per_shanghai_day(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    now = await factory.now()
    # move to 10:00 Shanghai so the next day is predictable
    local = now.astimezone(clock.SHANGHAI)
    target = local.replace(hour=10, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    await factory.advance(int((target - local).total_seconds()))
    now = await factory.now()
    created = await create_order(client, merchant, creator, product, minute(now + timedelta(days=3)))
    r = await act(client, merchant, created["id"], "remind")
    assert r.status_code == 200 and r.json()["state"] == "pending_acceptance"
    # offered actions are actions that work: no second `remind` today, in the answer and on a read
    assert r.json()["allowed_actions"] == ["cancel"]
    read = await client.get(f"/v1/task-orders/{created['id']}", headers=merchant.headers)
    assert read.json()["allowed_actions"] == ["cancel"]
    r = await act(client, merchant, created["id"], "remind")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    retry = int(r.headers["retry-after"])
    assert 13 * 3600 < retry <= 14 * 3600 + 1  # until 00:00 Shanghai
    assert (await act(client, creator, created["id"], "remind")).status_code == 403
    await factory.advance(retry)
    read = await client.get(f"/v1/task-orders/{created['id']}", headers=merchant.headers)
    assert read.json()["allowed_actions"] == ["remind", "cancel"]  # a new Shanghai day
    r = await act(client, merchant, created["id"], "remind")
    assert r.status_code == 200
    async with factory.maker() as session:
        kinds = list(await session.scalars(select(Notification.kind).where(Notification.account_id == creator.id)))
        sms = list(await session.scalars(select(SmsMessage.text).where(SmsMessage.account_id == creator.id)))
        await session.rollback()
    assert kinds.count("task_order.reminded") == 2 and len(sms) == 3


async def _accepted(client, factory, start_in: timedelta, hours: int = 1):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    now = await factory.now()
    created = await create_order(client, merchant, creator, product, minute(now + start_in), hours=hours)
    assert (await act(client, creator, created["id"], "accept")).status_code == 200
    return merchant, creator, created


async def test_compensation_not_accepted_and_72h_boundary(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    now = await factory.now()
    a = await create_order(client, merchant, creator, product, minute(now + timedelta(days=10)), hours=1)
    r = await act(client, merchant, a["id"], "cancel", CANCEL)
    assert r.json()["compensation_fen"] == 0 and r.json()["compensation_rule"] == "not_accepted"
    assert r.json()["state"] == "cancelled_by_merchant" and r.json()["sub_status"] == "merchant_cancelled"
    # 71h59m after acceptance: 0%; at 72h: the default 30%
    m1, c1, early = await _accepted(client, factory, timedelta(days=10))
    m2, c2, late = await _accepted(client, factory, timedelta(days=10))
    await factory.advance(71 * 3600 + 59 * 60)
    r = await act(client, m1, early["id"], "cancel", CANCEL)
    assert (r.json()["compensation_fen"], r.json()["compensation_rule"]) == (0, "within_72h_of_acceptance")
    await factory.advance(60)
    r = await act(client, m2, late["id"], "cancel", CANCEL)
    assert (r.json()["compensation_fen"], r.json()["compensation_rule"]) == (30_000, "default_rate")
    assert r.json()["hold_status"] == "split"
    assert (await wallet(client, c2))["available_fen"] == 30_000
    assert await wallet(client, m2) == {"account_id": m2.id, "available_fen": 970_000, "frozen_fen": 0, "total_fen": 970_000}
    assert (await wallet(client, c1))["available_fen"] == 0
    await ledger_invariants(factory.maker)


async def test_compensation_execution_day_starts_at_shanghai_midnight(client, factory: Factory):
    now = await factory.now()
    # the execution day: 5 days ahead, 10:00 Shanghai
    day = clock.local_date(now) + timedelta(days=5)
    midnight = clock.local_midnight(day)
    start = midnight + timedelta(hours=10)
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    before = await create_order(client, merchant, creator, product, start, hours=2)
    on_day = await create_order(client, merchant, creator, product, start, hours=2)
    for o in (before, on_day):
        assert (await act(client, creator, o["id"], "accept")).status_code == 200
    await factory.advance(math.ceil((midnight - await factory.now()).total_seconds()) - 60)  # 23:59 the day before
    r = await act(client, merchant, before["id"], "cancel", CANCEL)
    assert (r.json()["compensation_fen"], r.json()["compensation_rule"]) == (60_000, "default_rate")
    await factory.advance(60)  # 00:00 of the execution day
    r = await act(client, merchant, on_day["id"], "cancel", CANCEL)
    assert (r.json()["compensation_fen"], r.json()["compensation_rule"]) == (200_000, "execution_day")
    assert r.json()["hold_status"] == "paid"
    assert (await wallet(client, creator))["available_fen"] == 260_000
    await ledger_invariants(factory.maker)


async def test_cancel_on_execution_day_after_acceptance_pays_100(client, factory: Factory):
    """The spec's example: accepted, cancelled by the merchant on the execution day → 100%."""
    platform = await factory.user("platform")
    merchant, creator, o = await _accepted(client, factory, timedelta(hours=30), hours=3)
    start = (await order(client, merchant, o["id"]))["expected_start_at"]
    from datetime import datetime

    start_at = datetime.fromisoformat(start.replace("Z", "+00:00"))
    # ten minutes before the start, but on the execution day (Shanghai) even when it starts
    # just after midnight
    target = max(start_at - timedelta(minutes=10), clock.local_midnight(clock.local_date(start_at)))
    await factory.advance(math.ceil((target - await factory.now()).total_seconds()))
    r = await act(client, merchant, o["id"], "cancel", CANCEL)
    assert r.json()["compensation_fen"] == 300_000 and r.json()["compensation_rule"] == "execution_day"
    assert (await wallet(client, creator))["available_fen"] == 300_000
    # while live or pending review: also 100%
    m2, c2, o2 = await _accepted(client, factory, timedelta(days=2), hours=1)
    s2 = datetime.fromisoformat((await order(client, m2, o2["id"]))["expected_start_at"].replace("Z", "+00:00"))
    await live(client, platform, c2, "ls-exec", s2, ended=s2 + timedelta(hours=1))
    assert (await order(client, m2, o2["id"]))["state"] == "pending_review"
    await factory.advance(int((s2 - await factory.now()).total_seconds()) + 3 * 3600)
    r = await act(client, m2, o2["id"], "cancel", CANCEL)
    assert r.json()["compensation_rule"] == "execution_day" and r.json()["compensation_fen"] == 100_000
    await ledger_invariants(factory.maker)


async def test_compensation_no_show_is_zero(client, factory: Factory):
    merchant, creator, o = await _accepted(client, factory, timedelta(days=5), hours=1)
    from datetime import datetime

    start = datetime.fromisoformat(o["expected_start_at"].replace("Z", "+00:00"))
    # the window closes 12 h after the expected start with no session linked
    await factory.advance(int((start + timedelta(hours=12) - await factory.now()).total_seconds()) + 60)
    r = await act(client, merchant, o["id"], "cancel", CANCEL)
    assert (r.json()["compensation_fen"], r.json()["compensation_rule"]) == (0, "creator_no_show")
    assert (await wallet(client, merchant))["available_fen"] == 1_000_000


async def test_task_order_machine_every_action_from_every_state(client, factory: Factory):
    """Reach every state of `task_order` and fire every user action as merchant, creator, a
    stranger and an operator: allowed → moves; not now → 409; wrong role → 403; stranger → 404."""
    merchant, product = await ready_merchant(client, factory, amount=5_000_000)
    creator = await factory.user("creator")
    stranger = await factory.user("merchant")
    op = await factory.operator()
    platform = await factory.user("platform")
    counter = iter(range(1000))

    async def make(state: str) -> str:
        # each order is booked ahead of the clock, which the live sessions below move to their start
        start = minute(await factory.now() + timedelta(days=3))
        o = await create_order(client, merchant, creator, product, start, hours=1)
        oid = o["id"]
        if state == "pending_acceptance":
            return oid
        if state == "cancelled_rejected":
            await act(client, creator, oid, "reject")
            return oid
        if state == "cancelled_by_merchant":
            await act(client, merchant, oid, "cancel", CANCEL)
            return oid
        await act(client, creator, oid, "accept")
        if state == "waiting_live":
            return oid
        if state == "cancelled_by_creator":
            await act(client, creator, oid, "cancel", CANCEL)
            return oid
        ext = f"ls-every-{next(counter)}"
        await live(client, platform, creator, ext, start)
        if state == "live":
            return oid
        await live(client, platform, creator, ext, start, ended=start + timedelta(hours=1))
        if state == "pending_review":
            return oid
        await act(client, merchant, oid, "approve")
        return oid

    # who may fire what from where: (actor, action, body) → destination
    moves = {
        "pending_acceptance": {
            ("creator", "accept"): "waiting_live",
            ("creator", "reject"): "cancelled_rejected",
            ("merchant", "remind"): "pending_acceptance",
            ("merchant", "cancel"): "cancelled_by_merchant",
        },
        "waiting_live": {("merchant", "cancel"): "cancelled_by_merchant", ("creator", "cancel"): "cancelled_by_creator"},
        "live": {("merchant", "cancel"): "cancelled_by_merchant", ("creator", "cancel"): "cancelled_by_creator"},
        "pending_review": {
            ("merchant", "approve"): "completed",
            ("merchant", "cancel"): "cancelled_by_merchant",
            ("creator", "cancel"): "cancelled_by_creator",
        },
    }
    role_of = {"accept": "creator", "reject": "creator", "remind": "merchant", "approve": "merchant"}
    users = {"merchant": merchant, "creator": creator}
    states = [
        "pending_acceptance",
        "waiting_live",
        "live",
        "pending_review",
        "completed",
        "cancelled_rejected",
        "cancelled_by_creator",
        "cancelled_by_merchant",
    ]
    for state in states:
        for action in ("accept", "reject", "remind", "approve", "cancel"):
            for who in ("merchant", "creator"):
                oid = await make(state)
                assert (await order(client, merchant, oid))["state"] == state
                body = CANCEL if action == "cancel" else None
                # a stranger never sees it; an operator may never fire it
                assert (await act(client, stranger, oid, action, body)).status_code == 404
                assert (await act(client, op, oid, action, body)).status_code == 403
                r = await act(client, users[who], oid, action, body)
                dest = moves.get(state, {}).get((who, action))
                if dest is not None:
                    assert r.status_code == 200, (state, who, action, r.text)
                    assert r.json()["state"] == dest
                elif action != "cancel" and role_of[action] != who:
                    assert r.status_code == 403, (state, who, action, r.text)
                else:
                    assert r.status_code == 409, (state, who, action, r.text)
                    assert r.json()["code"] == "invalid_transition" and r.json()["state"] == state
    # cancelled_timeout (timer) refuses everything
    oid = await make("pending_acceptance")
    await factory.advance(25 * 3600)
    assert (await order(client, merchant, oid))["state"] == "cancelled_timeout"
    for who, action in (
        ("creator", "accept"),
        ("creator", "reject"),
        ("merchant", "remind"),
        ("merchant", "approve"),
        ("merchant", "cancel"),
        ("creator", "cancel"),
    ):
        r = await act(client, users[who], oid, action, CANCEL if action == "cancel" else None)
        assert r.status_code == 409 and r.json()["allowed_actions"] == []
    await ledger_invariants(factory.maker)


async def test_lists_filters_and_counts(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator", nickname="小美直播")
    other_creator = await factory.user("creator", nickname="大壮")
    other_merchant, other_product = await ready_merchant(client, factory)
    now = await factory.now()
    start = minute(now + timedelta(days=2))
    a = await create_order(client, merchant, creator, product, start, hours=1, title="春季上新")
    b = await create_order(client, merchant, other_creator, product, start, hours=1, title="夏日清仓")
    c = await create_order(client, merchant, creator, product, start, hours=1, title="秋冬专场")
    await create_order(client, other_merchant, creator, other_product, start, hours=1)
    await act(client, creator, a["id"], "accept")
    await act(client, other_creator, b["id"], "reject")

    async def ids(user, **params):
        r = await client.get("/v1/task-orders", headers=user.headers, params=params)
        assert r.status_code == 200, r.text
        return [o["id"] for o in r.json()["items"]]

    assert await ids(merchant) == [c["id"], b["id"], a["id"]]
    assert await ids(merchant, status="in_progress") == [a["id"]]
    assert await ids(merchant, sub_status="waiting_live") == [a["id"]]
    assert await ids(merchant, status="cancelled") == [b["id"]]
    assert await ids(merchant, sub_status="creator_rejected") == [b["id"]]
    assert await ids(merchant, status="pending_acceptance") == [c["id"]]
    assert await ids(merchant, q="夏日") == [b["id"]]
    assert await ids(merchant, q="小美") == [c["id"], a["id"]]
    assert await ids(merchant, q="%") == []
    assert await ids(merchant, created_from=iso(now + timedelta(hours=1))) == []
    assert len(await ids(merchant, created_from=iso(now - timedelta(minutes=1)), created_to=iso(now + timedelta(hours=1)))) == 3
    assert len(await ids(creator)) == 3  # two from merchant, one from the other merchant
    assert await ids(other_creator) == [b["id"]]
    assert len(await ids(await factory.operator())) >= 4
    assert (await client.get("/v1/task-orders", headers=merchant.headers, params={"status": "nope"})).status_code == 422
    assert (
        await client.get("/v1/task-orders", headers=merchant.headers, params={"created_from": "2026-01-01T00:00:00"})
    ).status_code == 422
    page = (await client.get("/v1/task-orders", headers=merchant.headers, params={"limit": 2})).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (
        await client.get("/v1/task-orders", headers=merchant.headers, params={"limit": 2, "cursor": page["next_cursor"]})
    ).json()
    assert [o["id"] for o in rest["items"]] == [a["id"]] and rest["next_cursor"] is None
    counts = (await client.get("/v1/task-orders/counts", headers=merchant.headers)).json()
    assert counts == {"pending_acceptance": 1, "in_progress": 1, "completed": 0, "cancelled": 1, "all": 3}
    # another party's order is a 404
    assert (await client.get(f"/v1/task-orders/{a['id']}", headers=other_merchant.headers)).status_code == 404
    r = await client.get(f"/v1/task-orders/{a['id']}/history", headers=other_creator.headers)
    assert r.status_code == 404


async def test_disputes(client, factory: Factory):
    merchant, creator, o = await _accepted(client, factory, timedelta(days=10), hours=2)
    op = await factory.operator()
    stranger = await factory.user("creator")
    # not ended yet
    r = await client.post(f"/v1/task-orders/{o['id']}/disputes", headers=merchant.headers, json={"reason": "x"})
    assert r.status_code == 409 and r.json()["code"] == "order_not_ended"
    await factory.advance(4 * 86400)
    r = await act(client, merchant, o["id"], "cancel", CANCEL)
    assert r.json()["compensation_fen"] == 60_000  # 30% of 200,000
    assert (
        await client.post(f"/v1/task-orders/{o['id']}/disputes", headers=stranger.headers, json={"reason": "x"})
    ).status_code == 404
    r = await client.post(
        f"/v1/task-orders/{o['id']}/disputes", headers=creator.headers, json={"reason": "商家临时取消，准备工作已完成"}
    )
    assert r.status_code == 201, r.text
    dispute = r.json()
    assert dispute["state"] == "open" and dispute["allowed_actions"] == ["withdraw"]
    assert dispute["creator_received_fen"] == 60_000
    r = await client.post(f"/v1/task-orders/{o['id']}/disputes", headers=merchant.headers, json={"reason": "y"})
    assert r.status_code == 409 and r.json()["code"] == "dispute_exists"
    assert (await client.get(f"/v1/disputes/{dispute['id']}", headers=stranger.headers)).status_code == 404
    # the other party may never withdraw it: 403 (client-contract.md), not 409, and not offered
    r = await client.post(f"/v1/disputes/{dispute['id']}/withdraw", headers=merchant.headers)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    seen = await client.get(f"/v1/disputes/{dispute['id']}", headers=merchant.headers)
    assert seen.status_code == 200 and seen.json()["allowed_actions"] == []
    assert (
        await client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=merchant.headers, json={"creator_share_fen": 1})
    ).status_code == 403
    r = await client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=op.headers, json={"creator_share_fen": 200_001})
    assert r.status_code == 422
    # the merchant spends its balance down so it cannot cover the adjustment
    r = await client.post(
        f"/v1/disputes/{dispute['id']}/resolve", headers=op.headers, json={"creator_share_fen": 150_000, "note": "裁定"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "resolved" and r.json()["adjustment_fen"] == 90_000
    assert (await wallet(client, creator))["available_fen"] == 150_000
    assert (await wallet(client, merchant))["available_fen"] == 1_000_000 - 150_000
    r = await client.post(f"/v1/disputes/{dispute['id']}/resolve", headers=op.headers, json={"creator_share_fen": 0})
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    await ledger_invariants(factory.maker)


async def test_dispute_insufficient_balance_and_withdraw(client, factory: Factory):
    merchant, creator, o = await _accepted(client, factory, timedelta(days=10), hours=1)
    op = await factory.operator()
    await factory.advance(4 * 86400)
    await act(client, merchant, o["id"], "cancel", CANCEL)  # creator gets 30,000
    r = await client.post(f"/v1/task-orders/{o['id']}/disputes", headers=merchant.headers, json={"reason": "退款"})
    dispute = r.json()
    assert (await wallet(client, creator))["available_fen"] == 30_000
    withdrawn = await client.post(f"/v1/disputes/{dispute['id']}/withdraw", headers=merchant.headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    # the creator may still open its own
    r = await client.post(f"/v1/task-orders/{o['id']}/disputes", headers=creator.headers, json={"reason": "要全款"})
    assert r.status_code == 201
    second = r.json()
    # the merchant cannot pay: spend its balance on other orders first
    product = (
        await client.post(
            "/v1/products",
            headers=merchant.headers,
            json={"title": "p", "price_fen": 1, "inventory": 1, "general_commission_bp": 100},
        )
    ).json()["id"]
    rich = await factory.user("creator", quotes={"dedicated_hourly_fen": 950_000, "shared_hourly_fen": 1})
    now = await factory.now()
    await create_order(client, merchant, rich, product, minute(now + timedelta(days=3)), hours=1)
    assert (await wallet(client, merchant))["available_fen"] == 1_000_000 - 30_000 - 950_000
    r = await client.post(f"/v1/disputes/{second['id']}/resolve", headers=op.headers, json={"creator_share_fen": 100_000})
    assert r.status_code == 409 and r.json()["code"] == "insufficient_balance"
    assert r.json()["required_fen"] == 70_000
    assert (await client.get(f"/v1/disputes/{second['id']}", headers=op.headers)).json()["state"] == "open"
    # the window: 30 days after the end
    await factory.advance(31 * 86400)
    merchant2, creator2, o2 = await _accepted(client, factory, timedelta(days=10), hours=1)
    await act(client, creator2, o2["id"], "cancel", CANCEL)
    await factory.advance(30 * 86400 + 60)
    r = await client.post(f"/v1/task-orders/{o2['id']}/disputes", headers=merchant2.headers, json={"reason": "z"})
    assert r.status_code == 409 and r.json()["code"] == "dispute_window_closed"
    await ledger_invariants(factory.maker)


async def test_xingtu_binding_and_creator_square(client, factory: Factory):
    merchant = await factory.user("merchant")
    other = await factory.user("merchant")
    r = await client.post("/v1/xingtu-binding", headers=merchant.headers, json={})
    assert r.status_code == 200 and r.json()["registered"] is True
    first = r.json()["xingtu_account_id"]
    r = await client.post("/v1/xingtu-binding", headers=merchant.headers, json={})
    assert r.json() == {"merchant_id": merchant.id, "xingtu_account_id": first, "registered": False}
    r = await client.post("/v1/xingtu-binding", headers=other.headers, json={"xingtu_account_id": first})
    assert r.status_code == 409 and r.json()["code"] == "xingtu_account_taken"
    r = await client.post("/v1/xingtu-binding", headers=other.headers, json={"xingtu_account_id": "xt-998877"})
    assert r.status_code == 200 and r.json()["xingtu_account_id"] == "xt-998877"
    me = (await client.get("/v1/accounts/me", headers=other.headers)).json()
    assert me["profile"]["xingtu_account_id"] == "xt-998877"
    creator = await factory.user("creator")
    assert (await client.post("/v1/xingtu-binding", headers=creator.headers, json={})).status_code == 403

    high = await factory.user("creator", nickname="星光小美", level=6)
    resting = await factory.user("creator", nickname="星光休息", level=6, accepting_orders=False)
    r = await client.get("/v1/creators", headers=merchant.headers, params={"q": "星光", "level_min": 5})
    items = r.json()["items"]
    assert [c["id"] for c in items] == [resting.id, high.id]
    assert "contact" not in items[0] and items[1]["quotes"]["dedicated_hourly_fen"] == 100_000
    r = await client.get("/v1/creators", headers=merchant.headers, params={"q": "星光", "accepting_orders": "true"})
    assert [c["id"] for c in r.json()["items"]] == [high.id]
    assert (await client.get("/v1/creators", headers=merchant.headers, params={"level_min": 9})).status_code == 422
