"""Authorization on REAL resources that are not the caller's (OWASP API1 BOLA / API5 BFLA),
generated from the route table so that a new route cannot escape it.

Every operation that takes an id is grouped by its resource (the path up to its first
parameter, e.g. `/v1/task-orders/{order_id}`). For each resource a builder makes a real one,
owned by real accounts, through the API. Then every operation on it is called with its real ids:

- by a fresh account of every role (a second account of the owner's role included) that is
  neither a party to it nor entitled by the operation's rule: the answer is 403/404
  problem+json — the same status an id that does not exist gets, so the answer never reveals
  that the resource exists — never a 2xx, never a 5xx;
- where an operation is open to every account of a role (a public card, a published campaign),
  a stranger of that role may get a 2xx, but none of the resource's private values (other
  parties' ids, contact details) may appear in the answer;
- by the operator, who may read everything by design and act where the machines say so;
- last, by the legitimate parties: the answer is a 2xx or a business 409/422, never 401/403/404
  — which proves the resource was real.

`test_every_resource_kind_has_a_builder` fails as soon as a route with a new kind of id appears
until a builder (and the rules for its operations) are added here."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute

from app.main import create_app
from tests.conftest import Factory, User

ROLES = ["merchant", "creator", "agency", "group_leader", "service_provider", "platform"]
_APP = create_app()
ROUTES = sorted(
    {
        (method, route.path)
        for route in _APP.routes
        if isinstance(route, APIRoute) and route.path.startswith("/v1")
        for method in route.methods
    }
)
WITH_ID = [(m, p) for m, p in ROUTES if "{" in p]
PARAM = re.compile(r"\{([^}]+)\}")


def resource_of(path: str) -> str:
    """The resource an operation acts on: its path up to and including the first parameter."""
    return path[: path.index("}") + 1]


RESOURCES: dict[str, list[tuple[str, str]]] = {}
for _m, _p in WITH_ID:
    RESOURCES.setdefault(resource_of(_p), []).append((_m, _p))


@dataclass
class World:
    ids: dict[str, str]  # path parameter -> a real value
    parties: dict[str, User]  # name -> account with a relation to the resource
    secrets: list[str] = field(default_factory=list)  # values a stranger must never see
    bodies: dict[tuple[str, str], Any] = field(default_factory=dict)  # valid bodies needing the world


Builder = Callable[[Any, Factory], Awaitable[World]]
BUILDERS: dict[str, Builder] = {}


def builds(resource: str):
    def register(fn: Builder) -> Builder:
        BUILDERS[resource] = fn
        return fn

    return register


async def _ok(r, *codes: int) -> dict:
    assert r.status_code in (codes or (200, 201)), f"{r.request.method} {r.request.url} → {r.status_code} {r.text}"
    return r.json()


# -- builders ------------------------------------------------------------------------------------
@builds("/v1/accounts/{account_id}")
async def _account(client, factory: Factory) -> World:
    creator = await factory.user("creator", contact={"phone": "13911112222", "wechat": "wx_secret_acc"})
    return World({"account_id": creator.id}, {"creator": creator}, secrets=["13911112222", "wx_secret_acc"])


@builds("/v1/products/{product_id}")
async def _product(client, factory: Factory) -> World:
    merchant = await factory.user("merchant")
    p = await _ok(
        await client.post(
            "/v1/products", headers=merchant.headers, json={"title": "P", "brand": "B", "price_fen": 100, "inventory": 5}
        )
    )
    return World({"product_id": p["id"]}, {"merchant": merchant})


@builds("/v1/state-machines/{name}")
async def _machine(client, factory: Factory) -> World:
    return World({"name": "task_order"}, {})


@builds("/v1/wallet/top-ups/{top_up_id}")
async def _top_up(client, factory: Factory) -> World:
    merchant = await factory.user("merchant")
    t = await _ok(
        await client.post(
            "/v1/wallet/top-ups",
            headers=merchant.headers,
            json={"amount_fen": 12345, "method": "bank_transfer", "reference": "ref-secret-topup"},
        )
    )
    return World({"top_up_id": t["id"]}, {"merchant": merchant}, secrets=["ref-secret-topup"])


async def _order(client, factory: Factory, *, accept: bool = False):
    from tests.test_task_orders_support import create_order, minute, ready_merchant

    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    start = minute(await factory.now() + timedelta(days=1))
    o = await create_order(client, merchant, creator, product, start, hours=1)
    if accept:
        await _ok(await client.post(f"/v1/task-orders/{o['id']}/accept", headers=creator.headers))
    return merchant, creator, o, start


@builds("/v1/task-orders/{order_id}")
async def _task_order(client, factory: Factory) -> World:
    merchant, creator, o, _ = await _order(client, factory)
    return World({"order_id": o["id"]}, {"merchant": merchant, "creator": creator})


@builds("/v1/disputes/{dispute_id}")
async def _dispute(client, factory: Factory) -> World:
    from tests.test_task_orders_support import CANCEL

    merchant, creator, o, _ = await _order(client, factory)
    await _ok(await client.post(f"/v1/task-orders/{o['id']}/cancel", headers=merchant.headers, json=CANCEL))
    d = await _ok(
        await client.post(
            f"/v1/task-orders/{o['id']}/disputes", headers=creator.headers, json={"reason": "dispute-secret-reason"}
        ),
        201,
    )
    return World({"dispute_id": d["id"]}, {"merchant": merchant, "creator": creator}, secrets=["dispute-secret-reason"])


@builds("/v1/live-sessions/{live_session_id}")
async def _live_session(client, factory: Factory) -> World:
    from tests.test_task_orders_support import live

    merchant, creator, o, start = await _order(client, factory, accept=True)
    platform = await factory.user("platform")
    session = await live(client, platform, creator, f"ls-{o['id']}", start + timedelta(minutes=5))
    return World({"live_session_id": session["id"]}, {"merchant": merchant, "creator": creator})


async def _campaign_world(client, factory: Factory) -> World:
    from tests.test_campaigns import sign_up, world

    w = await world(client, factory)
    merchant = w.merchants[0]
    signup = await sign_up(client, w, contact={"phone": "13922223333", "wechat": "wx_secret_signup"})
    await _ok(
        await client.put(
            f"/v1/campaigns/{w.campaign['id']}/my-card",
            headers=w.creator.headers,
            json={
                "contact": {"phone": "13966667777", "wechat": "wx_secret_card"},
                "intended_merchants": [],
                "cooperation_note": "card-note",
            },
        )
    )
    intent = await _ok(
        await client.post(
            f"/v1/campaigns/{w.campaign['id']}/intents", headers=merchant.headers, json={"description": "intent-secret-text"}
        ),
        201,
    )
    product_id = w.products[merchant.id]["id"]
    return World(
        {"campaign_id": w.campaign["id"], "signup_id": signup["id"]},
        {"creator": w.creator, "merchant": merchant},
        secrets=[
            signup["id"],
            intent["id"],
            "13922223333",
            "wx_secret_signup",
            "intent-secret-text",
            "13966667777",
            "wx_secret_card",
        ],
        bodies={
            ("PUT", "/v1/campaigns/{campaign_id}/eligible-creators"): {"creator_ids": [w.creator.id]},
            ("POST", "/v1/campaigns/{campaign_id}/signups"): {
                "shop_ids": [merchant.id],
                "planned_live_at": w.campaign["live_to"],
                "note": "n",
            },
            ("POST", "/v1/campaign-signups/{signup_id}/submit-products"): {
                "items": [{"product_id": product_id, "planned_quantity": 1}]
            },
        },
    )


BUILDERS["/v1/campaigns/{campaign_id}"] = _campaign_world
BUILDERS["/v1/campaign-signups/{signup_id}"] = _campaign_world


@builds("/v1/live-bases/{base_id}")
async def _base(client, factory: Factory) -> World:
    agency = await factory.user("agency")
    base = await _ok(
        await client.post("/v1/live-bases", headers=agency.headers, json={"name": "Base", "address": "杭州市 secret 1 号"}), 201
    )
    return World({"base_id": base["id"]}, {"agency": agency})


async def _binding(client, factory: Factory, kind: str) -> World:
    agency = await factory.user("agency")
    party = await factory.user("creator" if kind == "creator" else "merchant")
    body = {"creator_id": party.id, "commission_bp": 500} if kind == "creator" else {"shop_id": party.id, "type": "live_base"}
    b = await _ok(await client.post(f"/v1/{kind}-bindings", headers=agency.headers, json=body), 201)
    return World({"binding_id": b["id"]}, {"agency": agency, kind if kind == "creator" else "merchant": party})


@builds("/v1/creator-bindings/{binding_id}")
async def _creator_binding(client, factory: Factory) -> World:
    return await _binding(client, factory, "creator")


@builds("/v1/shop-bindings/{binding_id}")
async def _shop_binding(client, factory: Factory) -> World:
    return await _binding(client, factory, "shop")


@builds("/v1/product-pool/{item_id}")
async def _pool_item(client, factory: Factory) -> World:
    from tests.test_live_bases import bind_shop, pool, product

    agency = await factory.user("agency")
    merchant = await factory.user("merchant")
    await bind_shop(client, agency, merchant)
    await product(client, merchant)
    items = await pool(client, agency)
    assert len(items) == 1, items
    return World({"item_id": items[0]["item_id"]}, {"agency": agency, "merchant": merchant})


async def _check_in_world(client, factory: Factory, confirm: bool) -> World:
    from tests.test_live_bases import make_base, scan

    agency = await factory.user("agency")
    creator = await factory.user("creator")
    base = await make_base(client, agency)
    row = await scan(client, creator, agency, base["id"])
    ids = {"check_in_id": row["id"]}
    if confirm:
        await _ok(await client.post(f"/v1/check-ins/{row['id']}/confirm", headers=creator.headers))
        coops = await _ok(await client.get("/v1/cooperations", headers=creator.headers))
        ids["cooperation_id"] = coops["items"][0]["id"]
    return World(ids, {"agency": agency, "creator": creator})


@builds("/v1/check-ins/{check_in_id}")
async def _check_in(client, factory: Factory) -> World:
    return await _check_in_world(client, factory, confirm=False)


@builds("/v1/cooperations/{cooperation_id}")
async def _cooperation(client, factory: Factory) -> World:
    return await _check_in_world(client, factory, confirm=True)


@builds("/v1/conversations/{conversation_id}")
async def _conversation(client, factory: Factory) -> World:
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    c = await _ok(await client.post("/v1/conversations", headers=merchant.headers, json={"counterpart_id": creator.id}), 201)
    await _ok(
        await client.post(
            f"/v1/conversations/{c['id']}/messages", headers=merchant.headers, json={"text": "message-secret-text"}
        ),
        201,
    )
    return World({"conversation_id": c["id"]}, {"merchant": merchant, "creator": creator}, secrets=["message-secret-text"])


@builds("/v1/creators/{creator_id}")
async def _creator(client, factory: Factory) -> World:
    creator = await factory.user("creator", contact={"phone": "13944445555", "wechat": "wx_secret_cv"})
    viewer = await factory.user("merchant")  # an alliance member: entitled to view (quota-counted)
    return World({"creator_id": creator.id}, {"merchant": viewer}, secrets=["13944445555", "wx_secret_cv"])


@builds("/v1/provider-contracts/{contract_id}")
async def _contract(client, factory: Factory) -> World:
    provider = await factory.user("service_provider")
    merchant = await factory.user("merchant")
    c = await _ok(
        await client.post(
            "/v1/provider-contracts", headers=provider.headers, json={"merchant_id": merchant.id, "mode": "commission_split"}
        ),
        201,
    )
    return World({"contract_id": c["id"]}, {"service_provider": provider, "merchant": merchant})


@builds("/v1/incentive-programs/{program_id}")
async def _program(client, factory: Factory) -> World:
    from tests.test_incentives import month_str

    op = await factory.operator()
    month = month_str((await factory.now()).date())
    p = await _ok(
        await client.post(
            "/v1/incentive-programs", headers=op.headers, json={"name": "P", "month_from": month, "month_to": month}
        ),
        201,
    )
    return World({"program_id": p["id"], "month": month}, {})


async def _voucher_world(client, factory: Factory, redeem: bool) -> World:
    from tests.test_incentives import published_world

    w = await published_world(client, factory)
    merchant_id = w.v1["merchant_id"]
    use_date = ((await factory.now()) + timedelta(days=7)).date().isoformat()
    body = {"merchant_id": merchant_id, "amount_fen": 1, "use_date": use_date}
    ids = {"voucher_id": w.v1["id"]}
    if redeem:
        r = await _ok(await client.post(f"/v1/vouchers/{w.v1['id']}/redemptions", headers=w.provider.headers, json=body), 201)
        ids["redemption_id"] = r["id"]
    return World(ids, {"service_provider": w.provider}, bodies={("POST", "/v1/vouchers/{voucher_id}/redemptions"): body})


@builds("/v1/vouchers/{voucher_id}")
async def _voucher(client, factory: Factory) -> World:
    return await _voucher_world(client, factory, redeem=False)


@builds("/v1/redemptions/{redemption_id}")
async def _redemption(client, factory: Factory) -> World:
    return await _voucher_world(client, factory, redeem=True)


@builds("/v1/webhooks/{webhook_id}")
async def _webhook(client, factory: Factory) -> World:
    merchant = await factory.user("merchant")
    h = await _ok(
        await client.post(
            "/v1/webhooks",
            headers=merchant.headers,
            json={
                "url": "https://hooks.example/secret-path",
                "event_types": ["task_order.created"],
                "secret": "whsec-secret-0123456789",
            },
        ),
        201,
    )
    return World(
        {"webhook_id": h["id"]}, {"merchant": merchant}, secrets=["hooks.example/secret-path", "whsec-secret-0123456789"]
    )


@builds("/v1/notifications/{notification_id}")
async def _notification(client, factory: Factory) -> World:
    from app.domain.notifications import notify

    merchant = await factory.user("merchant")
    async with factory.maker() as session:
        note = await notify(session, merchant.id, "task_order.reminded", "title-secret", "body-secret", {})
        await session.commit()
        note_id = note.id
    return World({"notification_id": note_id}, {"merchant": merchant}, secrets=["title-secret", "body-secret"])


# -- bodies that do not depend on the world -----------------------------------------------------
CANCEL = {"reason": {"code": "schedule_changed", "note": "档期冲突"}}
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/accounts/{account_id}"): {"display_name": "renamed"},
    ("POST", "/v1/accounts/{account_id}/suspend"): {"reason": "a test of who may"},
    ("PATCH", "/v1/products/{product_id}"): {"inventory": 7},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"enabled": False},
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): {},
    ("POST", "/v1/task-orders/{order_id}/cancel"): CANCEL,
    ("POST", "/v1/task-orders/{order_id}/disputes"): {"reason": "r"},
    ("POST", "/v1/disputes/{dispute_id}/resolve"): {"creator_share_fen": 0},
    ("POST", "/v1/campaign-signups/{signup_id}/merchant-reject"): {"reason": "r"},
    ("POST", "/v1/campaign-signups/{signup_id}/platform-reject"): {"reason": "r"},
    ("POST", "/v1/campaign-signups/{signup_id}/grant-traffic"): {"traffic_units": 1},
    ("PUT", "/v1/campaigns/{campaign_id}/my-card"): {"intended_merchants": [], "cooperation_note": "n"},
    ("POST", "/v1/campaigns/{campaign_id}/intents"): {"description": "d"},
    ("PATCH", "/v1/creator-bindings/{binding_id}"): {"commission_bp": 100},
    ("POST", "/v1/conversations/{conversation_id}/messages"): {"text": "hi"},
    ("POST", "/v1/creators/{creator_id}/contact-views"): {"field": "phone"},
    ("POST", "/v1/provider-contracts/{contract_id}/end"): {"reason": "r"},
    ("POST", "/v1/redemptions/{redemption_id}/reject"): {"reason": "r"},
}


# -- who may do what ------------------------------------------------------------------------------
# The legitimate callers of every operation that takes an id: names of the world's parties, and
# "operator". Everyone else (any fresh account of any role, the operator where not listed) must
# get 403/404. The operator reads everything but the private tools of a party (a merchant's stock
# plan, an agency's check-in code, a conversation, another account's webhooks and inbox).
_READ = ("operator",)
LEGIT: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/v1/accounts/{account_id}"): ("creator", "operator"),
    ("PATCH", "/v1/accounts/{account_id}"): ("operator",),
    ("POST", "/v1/accounts/{account_id}/suspend"): ("operator",),
    ("POST", "/v1/accounts/{account_id}/reinstate"): ("operator",),
    ("GET", "/v1/products/{product_id}"): ("merchant", "operator"),
    ("PATCH", "/v1/products/{product_id}"): ("merchant",),
    ("GET", "/v1/state-machines/{name}/diagram"): ("operator",),
    ("GET", "/v1/wallet/top-ups/{top_up_id}"): ("merchant", "operator"),
    ("GET", "/v1/wallet/top-ups/{top_up_id}/history"): ("merchant", "operator"),
    ("POST", "/v1/wallet/top-ups/{top_up_id}/confirm"): ("operator",),
    ("POST", "/v1/wallet/top-ups/{top_up_id}/reject"): ("operator",),
    ("GET", "/v1/task-orders/{order_id}"): ("merchant", "creator", "operator"),
    ("GET", "/v1/task-orders/{order_id}/history"): ("merchant", "creator", "operator"),
    ("POST", "/v1/task-orders/{order_id}/accept"): ("creator",),
    ("POST", "/v1/task-orders/{order_id}/reject"): ("creator",),
    ("POST", "/v1/task-orders/{order_id}/remind"): ("merchant",),
    ("POST", "/v1/task-orders/{order_id}/approve"): ("merchant",),
    ("POST", "/v1/task-orders/{order_id}/cancel"): ("merchant", "creator"),
    ("POST", "/v1/task-orders/{order_id}/disputes"): ("merchant", "creator"),
    ("GET", "/v1/disputes/{dispute_id}"): ("merchant", "creator", "operator"),
    ("POST", "/v1/disputes/{dispute_id}/resolve"): ("operator",),
    ("POST", "/v1/disputes/{dispute_id}/withdraw"): ("merchant", "creator"),
    ("GET", "/v1/live-sessions/{live_session_id}/qr.svg"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}/history"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}/creators"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}/signups"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}/intents"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaigns/{campaign_id}/eligible-creators"): ("operator",),
    ("PUT", "/v1/campaigns/{campaign_id}/eligible-creators"): ("operator",),
    ("GET", "/v1/campaigns/{campaign_id}/stock-plan"): ("merchant",),
    ("GET", "/v1/campaigns/{campaign_id}/stock-plan/export"): ("merchant",),
    ("PUT", "/v1/campaigns/{campaign_id}/my-card"): ("creator",),
    ("GET", "/v1/campaigns/{campaign_id}/my-card"): ("creator",),
    ("POST", "/v1/campaigns/{campaign_id}/intents"): ("merchant",),
    ("POST", "/v1/campaigns/{campaign_id}/signups"): ("creator",),
    ("POST", "/v1/campaigns/{campaign_id}/publish"): ("operator",),
    ("POST", "/v1/campaigns/{campaign_id}/close"): ("operator",),
    ("GET", "/v1/campaign-signups/{signup_id}"): ("merchant", "creator", "operator"),
    ("GET", "/v1/campaign-signups/{signup_id}/history"): ("merchant", "creator", "operator"),
    ("POST", "/v1/campaign-signups/{signup_id}/merchant-approve"): ("merchant",),
    ("POST", "/v1/campaign-signups/{signup_id}/merchant-reject"): ("merchant",),
    ("POST", "/v1/campaign-signups/{signup_id}/merchant-confirm-stock"): ("merchant",),
    ("POST", "/v1/campaign-signups/{signup_id}/platform-approve"): ("operator",),
    ("POST", "/v1/campaign-signups/{signup_id}/platform-reject"): ("operator",),
    ("POST", "/v1/campaign-signups/{signup_id}/platform-confirm-stock"): ("operator",),
    ("POST", "/v1/campaign-signups/{signup_id}/grant-traffic"): ("operator",),
    ("POST", "/v1/campaign-signups/{signup_id}/submit-products"): ("creator",),
    ("POST", "/v1/campaign-signups/{signup_id}/withdraw"): ("creator",),
    ("GET", "/v1/live-bases/{base_id}"): ("agency", "operator"),
    ("GET", "/v1/live-bases/{base_id}/check-in-code"): ("agency",),
    ("GET", "/v1/live-bases/{base_id}/check-in-code.svg"): ("agency",),
    ("GET", "/v1/live-bases/{base_id}/stats"): ("agency", "operator"),
    ("GET", "/v1/creator-bindings/{binding_id}"): ("agency", "creator", "operator"),
    ("GET", "/v1/creator-bindings/{binding_id}/history"): ("agency", "creator", "operator"),
    ("POST", "/v1/creator-bindings/{binding_id}/accept"): ("creator",),
    ("POST", "/v1/creator-bindings/{binding_id}/decline"): ("creator",),
    ("POST", "/v1/creator-bindings/{binding_id}/revoke"): ("agency",),
    ("POST", "/v1/creator-bindings/{binding_id}/terminate"): ("agency", "creator"),
    ("GET", "/v1/shop-bindings/{binding_id}"): ("agency", "merchant", "operator"),
    ("GET", "/v1/shop-bindings/{binding_id}/history"): ("agency", "merchant", "operator"),
    ("POST", "/v1/shop-bindings/{binding_id}/accept"): ("merchant",),
    ("POST", "/v1/shop-bindings/{binding_id}/decline"): ("merchant",),
    ("POST", "/v1/shop-bindings/{binding_id}/revoke"): ("agency",),
    ("POST", "/v1/shop-bindings/{binding_id}/terminate"): ("agency", "merchant"),
    ("PATCH", "/v1/creator-bindings/{binding_id}"): ("agency",),
    ("POST", "/v1/product-pool/{item_id}/list"): ("agency",),
    ("POST", "/v1/product-pool/{item_id}/unlist"): ("agency",),
    ("GET", "/v1/check-ins/{check_in_id}"): ("agency", "creator", "operator"),
    ("GET", "/v1/check-ins/{check_in_id}/history"): ("agency", "creator", "operator"),
    ("POST", "/v1/check-ins/{check_in_id}/confirm"): ("creator",),
    ("POST", "/v1/check-ins/{check_in_id}/check-out"): ("creator", "agency"),
    ("GET", "/v1/cooperations/{cooperation_id}"): ("agency", "creator", "operator"),
    ("GET", "/v1/cooperations/{cooperation_id}/history"): ("agency", "creator", "operator"),
    ("POST", "/v1/cooperations/{cooperation_id}/terminate"): ("agency", "creator"),
    ("GET", "/v1/conversations/{conversation_id}/messages"): ("merchant", "creator"),
    ("POST", "/v1/conversations/{conversation_id}/messages"): ("merchant", "creator"),
    ("POST", "/v1/creators/{creator_id}/contact-views"): ("merchant",),
    ("GET", "/v1/provider-contracts/{contract_id}"): ("service_provider", "merchant", "operator"),
    ("GET", "/v1/provider-contracts/{contract_id}/history"): ("service_provider", "merchant", "operator"),
    ("POST", "/v1/provider-contracts/{contract_id}/accept"): ("merchant",),
    ("POST", "/v1/provider-contracts/{contract_id}/decline"): ("merchant",),
    ("POST", "/v1/provider-contracts/{contract_id}/end"): ("service_provider", "merchant"),
    ("POST", "/v1/incentive-programs/{program_id}/months/{month}/compute"): ("operator",),
    ("POST", "/v1/incentive-programs/{program_id}/months/{month}/publish"): ("operator",),
    ("POST", "/v1/vouchers/{voucher_id}/redemptions"): ("service_provider",),
    ("GET", "/v1/redemptions/{redemption_id}"): ("service_provider", "operator"),
    ("POST", "/v1/redemptions/{redemption_id}/approve"): ("operator",),
    ("POST", "/v1/redemptions/{redemption_id}/reject"): ("operator",),
    ("POST", "/v1/redemptions/{redemption_id}/fulfil"): ("operator",),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): ("merchant",),
    ("PATCH", "/v1/webhooks/{webhook_id}"): ("merchant",),
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): ("merchant",),
    ("DELETE", "/v1/webhooks/{webhook_id}"): ("merchant",),
    ("POST", "/v1/notifications/{notification_id}/read"): ("merchant",),
}
# Operations open to EVERY account of a role, whatever its relation to the resource: a stranger of
# that role may get a 2xx. Unless `True` (the operation exists to reveal them), none of the
# resource's private values may appear in its answer; filtered lists show a stranger nothing.
_ALL = {role: False for role in ROLES}
_MC = {"merchant": False, "creator": False}
OPEN: dict[tuple[str, str], dict[str, bool]] = {
    ("GET", "/v1/accounts/{account_id}"): _ALL,  # the public card
    ("GET", "/v1/products/{product_id}"): _ALL,
    ("GET", "/v1/state-machines/{name}/diagram"): _ALL,
    # a published campaign is shown to every merchant and creator (campaigns.md)
    ("GET", "/v1/campaigns/{campaign_id}"): _MC,
    ("GET", "/v1/campaigns/{campaign_id}/history"): _MC,
    ("GET", "/v1/campaigns/{campaign_id}/signups"): _MC,  # filtered: own / listing own shop
    ("GET", "/v1/campaigns/{campaign_id}/creators"): {"merchant": True, "creator": False},  # 寻找达人: cards
    ("GET", "/v1/campaigns/{campaign_id}/intents"): {"merchant": False},  # a merchant sees its own
    ("GET", "/v1/campaigns/{campaign_id}/stock-plan"): {"merchant": False},  # own products only
    ("GET", "/v1/campaigns/{campaign_id}/stock-plan/export"): {"merchant": False},
    ("POST", "/v1/campaigns/{campaign_id}/intents"): {"merchant": False},  # any merchant publishes one
    ("GET", "/v1/live-bases/{base_id}"): {"creator": False},  # the base's home page for creators
    ("POST", "/v1/creators/{creator_id}/contact-views"): {"merchant": True},  # alliance, quota-counted
}
# Resources whose existence is public (a published campaign, a public card, a base's home page):
# a role that may not use one of their operations may say so (403) rather than 404.
PUBLIC_RESOURCES = {
    "/v1/accounts/{account_id}",
    "/v1/products/{product_id}",
    "/v1/state-machines/{name}",
    "/v1/campaigns/{campaign_id}",
    "/v1/live-bases/{base_id}",
    "/v1/creators/{creator_id}",
}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def _fill(path: str, ids: dict[str, str]) -> str:
    return PARAM.sub(lambda m: ids[m.group(1)], path)


def _fake(path: str, ids: dict[str, str]) -> str:
    """The same operation on an id that does not exist (`month` and `name` are not ids)."""
    return PARAM.sub(lambda m: ids[m.group(1)] if m.group(1) in ("month", "name") else "zz_does_not_exist", path)


def _problem(r) -> str | None:
    if r.headers.get("content-type") != "application/problem+json":
        return f"content-type {r.headers.get('content-type')}"
    body = r.json()
    missing = PROBLEM_FIELDS - set(body)
    if missing or body["status"] != r.status_code:
        return f"problem body {body}"
    return None


def test_every_resource_kind_has_a_builder():
    """A route with a new kind of id fails here until it has a builder and rules."""
    missing = sorted(set(RESOURCES) - set(BUILDERS))
    assert not missing, f"add a builder to tests/test_authz_foreign.py for: {missing}"
    unruled = [op for op in WITH_ID if op not in LEGIT]
    assert not unruled, f"say who may call these in LEGIT (tests/test_authz_foreign.py): {unruled}"
    assert not set(LEGIT) - set(WITH_ID), f"stale rules: {sorted(set(LEGIT) - set(WITH_ID))}"
    params = {name for _, p in WITH_ID for name in PARAM.findall(p)}
    covered = {name for res in RESOURCES for _, p in RESOURCES[res] for name in PARAM.findall(p)}
    assert params == covered


def _kw(w: World, method: str, path: str) -> dict[str, Any]:
    body = w.bodies.get((method, path), BODIES.get((method, path)))
    return {"json": body} if body is not None else {}


@pytest.mark.parametrize("resource", sorted(RESOURCES))
async def test_foreign_resources_are_never_served(client, factory: Factory, resource):
    w = await BUILDERS[resource](client, factory)
    strangers = {role: await factory.user(role) for role in ROLES}
    op = await factory.operator()
    ops = sorted(RESOURCES[resource], key=lambda r: (r[0] != "GET", r[0] == "DELETE", r))  # a DELETE last
    failures: list[str] = []
    # 1. strangers of every role (the owner's role included), and the operator where not entitled
    for method, path in ops:
        kw = _kw(w, method, path)
        callers = [(f"stranger {role}", role, user) for role, user in strangers.items()]
        if "operator" not in LEGIT[(method, path)]:
            callers.append(("operator", "operator", op))
        for who, role, user in callers:
            r = await client.request(method, _fill(path, w.ids), headers=user.headers, **kw)
            where = f"{who}: {method} {path} → {r.status_code} {r.text[:160]}"
            if r.status_code >= 500 or r.status_code == 401:
                failures.append(where)
                continue
            opened = OPEN.get((method, path), {})
            if role in opened:
                if r.status_code < 300 and not opened[role]:
                    leaked = [s for s in w.secrets if s in r.text]
                    if leaked:
                        failures.append(f"{where} LEAKS {leaked}")
                elif r.status_code >= 400 and (problem := _problem(r)):
                    failures.append(f"{where}: {problem}")
                continue
            if r.status_code not in (403, 404):
                failures.append(where)
                continue
            if problem := _problem(r):
                failures.append(f"{where}: {problem}")
            if resource not in PUBLIC_RESOURCES and role != "operator":  # the operator reads it anyway
                f = await client.request(method, _fake(path, w.ids), headers=user.headers, **kw)
                if f.status_code != r.status_code:
                    failures.append(
                        f"{where}, but {f.status_code} for an id that does not exist: the answer reveals that the resource exists"
                    )
    # 2. the legitimate callers, reads first: the resource is real and theirs to use
    for method, path in ops:
        kw = _kw(w, method, path)
        for name in LEGIT[(method, path)]:
            user = op if name == "operator" else w.parties[name]
            r = await client.request(method, _fill(path, w.ids), headers=user.headers, **kw)
            if (
                r.status_code in (401, 403, 404)
                or r.status_code >= 500
                or (r.status_code >= 400 and (method == "GET" or r.status_code not in (409, 422)))
            ):
                failures.append(f"legitimate {name}: {method} {path} → {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)
