"""The platform core through HTTP: auth, accounts, products, ingest, errors, pagination,
idempotency, the clock, operations."""

from __future__ import annotations

import pytest

from tests.conftest import Factory


async def test_health_ready_metrics(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    r = await client.get("/metrics")
    assert r.status_code == 200 and "lc_http_request_duration_seconds" in r.text


async def test_docs_are_served_offline(client):
    r = await client.get("/docs")
    assert r.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in r.text
    assert "cdn" not in r.text.lower()
    assert (await client.get("/static-offline-docs/swagger-ui-bundle.js")).status_code == 200
    r = await client.get("/redoc")
    assert r.status_code == 200 and "fonts.googleapis" not in r.text
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/v1/auth/token"


async def test_login_and_me(client, factory: Factory):
    creator = await factory.user("creator", nickname="小美")
    r = await client.post("/v1/auth/token", data={"username": creator.username, "password": "password-123"})
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["token_type"] == "bearer" and token["expires_in"] > 0
    me = await client.get("/v1/accounts/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.json()["profile"]["nickname"] == "小美"
    assert me.json()["profile"]["contact"]["phone"] == "13800138000"
    bad = await client.post("/v1/auth/token", data={"username": creator.username, "password": "nope-nope"})
    assert bad.status_code == 401 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["code"] == "invalid_credentials"


async def test_unauthenticated_and_bad_token(client):
    r = await client.get("/v1/accounts/me")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await client.get("/v1/accounts/me", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401


async def test_only_operators_create_accounts(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.post(
        "/v1/accounts",
        headers=merchant.headers,
        json={
            "role": "creator",
            "username": "sneaky",
            "password": "password-123",
            "display_name": "x",
            "profile": {"nickname": "x"},
        },
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_profile_rules(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator")
    # a field of another role is refused
    r = await client.patch("/v1/accounts/me", headers=creator.headers, json={"profile": {"shop_name": "x"}})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "profile", "shop_name"]
    # operator-only fields
    r = await client.patch("/v1/accounts/me", headers=creator.headers, json={"profile": {"level": 7}})
    assert r.status_code == 403
    r = await client.patch(
        "/v1/accounts/me",
        headers=creator.headers,
        json={"profile": {"accepting_orders": False, "quotes": {"shared_hourly_fen": 5}}},
    )
    assert r.status_code == 200
    assert r.json()["profile"]["accepting_orders"] is False
    assert r.json()["profile"]["quotes"] == {"dedicated_hourly_fen": 100000, "shared_hourly_fen": 5}
    r = await client.patch(f"/v1/accounts/{creator.id}", headers=op.headers, json={"profile": {"level": 6}})
    assert r.status_code == 200 and r.json()["profile"]["level"] == 6
    # the public card hides contact details from others
    merchant = await factory.user("merchant")
    card = (await client.get(f"/v1/accounts/{creator.id}", headers=merchant.headers)).json()
    assert "contact" not in card["profile"] and card["username"] is None
    assert (await client.get("/v1/accounts/acc_missing", headers=merchant.headers)).status_code == 404


async def test_duplicate_username_is_conflict(client, factory: Factory):
    op = await factory.operator()
    body = {
        "role": "group_leader",
        "username": "dup-user",
        "password": "password-123",
        "display_name": "d",
        "profile": {"name": "d"},
    }
    assert (await client.post("/v1/accounts", headers=op.headers, json=body)).status_code == 201
    r = await client.post("/v1/accounts", headers=op.headers, json=body)
    assert r.status_code == 409 and r.json()["code"] == "username_taken"


async def test_validation_problem_shape(client, factory: Factory):
    op = await factory.operator()
    r = await client.post("/v1/accounts", headers=op.headers, json={"role": "wizard", "unknown": 1})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_failed" and body["status"] == 422
    assert all({"loc", "msg"} <= set(e) for e in body["errors"])
    r = await client.post("/v1/accounts", headers={**op.headers, "content-type": "application/json"}, content=b"{not json")
    assert r.status_code == 422


async def test_products_crud_and_pagination(client, factory: Factory):
    merchant = await factory.user("merchant")
    other = await factory.user("merchant")
    ids = []
    for i in range(5):
        r = await client.post(
            "/v1/products",
            headers=merchant.headers,
            json={"title": f"P{i}", "brand": "B", "price_fen": 100 + i, "inventory": 10, "general_commission_bp": 1000},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    seen = []
    cursor = None
    while True:
        params = {"shop_id": merchant.id, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/products", headers=other.headers, params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    r = await client.patch(f"/v1/products/{ids[0]}", headers=other.headers, json={"inventory": 1})
    assert r.status_code == 404
    r = await client.patch(f"/v1/products/{ids[0]}", headers=merchant.headers, json={"inventory": 150})
    assert r.status_code == 200 and r.json()["inventory"] == 150
    r = await client.get("/v1/products", headers=other.headers, params={"cursor": "%%%"})
    assert r.status_code == 422
    r = await client.get("/v1/products", headers=other.headers, params={"limit": 1000})
    assert r.status_code == 422


async def test_products_cursor_of_another_list_is_refused(client, factory: Factory):
    """The products' page is a prebuilt Core statement; a cursor still has to carry a product id."""
    from app.db.pagination import encode_cursor

    merchant = await factory.user("merchant")
    for cursor in (encode_cursor(merchant.id), encode_cursor("prd_nope"), encode_cursor(7)):
        r = await client.get("/v1/products", headers=merchant.headers, params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "cursor"], r.text
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 1, "inventory": 1})
    ).json()
    r = await client.get("/v1/products", headers=merchant.headers, params={"cursor": encode_cursor(product["id"])})
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


async def test_ingest_is_idempotent(client, factory: Factory):
    platform = await factory.user("platform")
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": "P", "price_fen": 100, "inventory": 10})
    ).json()
    order = {
        "external_id": "o-1",
        "shop_id": merchant.id,
        "product_id": product["id"],
        "creator_id": creator.id,
        "channel": "live",
        "amount_fen": 5000,
        "status": "paid",
        "paid_at": "2026-11-20T10:00:00+08:00",
    }
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": [order]})
    assert r.json() == {"inserted": 1, "updated": 0, "unchanged": 0}
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": [order]})
    assert r.json() == {"inserted": 0, "updated": 0, "unchanged": 1}
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": [{**order, "status": "refunded"}]})
    assert r.json() == {"inserted": 0, "updated": 1, "unchanged": 0}
    r = await client.post("/v1/ingest/orders", headers=merchant.headers, json={"orders": [order]})
    assert r.status_code == 403
    r = await client.post(
        "/v1/ingest/orders",
        headers=platform.headers,
        json={"orders": [{**order, "external_id": "o-2", "product_id": "prd_nope"}]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "orders", 0, "product_id"]

    live = {
        "external_id": "ls-1",
        "host_id": creator.id,
        "started_at": "2026-11-20T10:00:00Z",
        "peak_viewers": 10,
        "room_url": "https://live.example/1",
    }
    r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=live)
    assert r.status_code == 201 and r.json()["created"] is True
    r = await client.post(
        "/v1/ingest/live-sessions",
        headers=platform.headers,
        json={**live, "ended_at": "2026-11-20T12:00:00Z", "peak_viewers": 99},
    )
    assert r.status_code == 200 and r.json()["peak_viewers"] == 99 and r.json()["ended_at"]

    tiers = {"month": "2026-10", "tiers": [{"merchant_id": merchant.id, "tier": 3}]}
    assert (await client.post("/v1/ingest/merchant-tiers", headers=platform.headers, json=tiers)).json() == {
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
    }
    assert (await client.post("/v1/ingest/merchant-tiers", headers=platform.headers, json=tiers)).json() == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 1,
    }


async def test_idempotency_key_replays_and_refuses_reuse(client, factory: Factory):
    merchant = await factory.user("merchant")
    headers = {**merchant.headers, "Idempotency-Key": "k-1"}
    body = {"title": "Once", "price_fen": 1, "inventory": 1}
    first = await client.post("/v1/products", headers=headers, json=body)
    again = await client.post("/v1/products", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == first.json()
    listed = (await client.get("/v1/products", headers=merchant.headers, params={"shop_id": merchant.id})).json()
    assert len(listed["items"]) == 1
    r = await client.post("/v1/products", headers=headers, json={**body, "title": "Other"})
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    # another account may use the same key for itself
    other = await factory.user("merchant")
    r = await client.post("/v1/products", headers={**other.headers, "Idempotency-Key": "k-1"}, json=body)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


async def test_idempotency_key_in_use(client, factory: Factory):
    from app.api import routing

    merchant = await factory.user("merchant")
    routing._IN_FLIGHT.add((merchant.id, "busy"))
    try:
        r = await client.post(
            "/v1/products",
            headers={**merchant.headers, "Idempotency-Key": "busy"},
            json={"title": "x", "price_fen": 1, "inventory": 1},
        )
        assert r.status_code == 409 and r.json()["code"] == "idempotency_key_in_use"
    finally:
        routing._IN_FLIGHT.discard((merchant.id, "busy"))


async def test_test_clock(client, factory: Factory):
    op = await factory.operator()
    before = await factory.now()
    out = await factory.advance(3600)
    from datetime import datetime

    assert (datetime.fromisoformat(out["now"]) - before).total_seconds() >= 3600
    merchant = await factory.user("merchant")
    assert (await client.get("/v1/admin/clock", headers=merchant.headers)).status_code == 403
    assert (await client.post("/v1/admin/clock/advance", headers=op.headers, json={"seconds": -5})).status_code == 422


async def test_clock_is_404_in_production(application, client, factory: Factory, monkeypatch):
    op = await factory.operator()
    monkeypatch.setattr(application.state.settings, "env", "production", raising=False)
    from app.core.config import get_settings

    monkeypatch.setattr(get_settings(), "env", "production")
    assert (await client.get("/v1/admin/clock", headers=op.headers)).status_code == 404
    assert (await client.post("/v1/admin/clock/advance", headers=op.headers, json={"seconds": 1})).status_code == 404


async def test_oversized_body_is_413(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.post("/v1/products", headers=merchant.headers, content=b"x" * 2_000_000)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_unknown_route_is_problem(client):
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_production_refuses_default_secret(monkeypatch):
    from pydantic import ValidationError

    from app.core.config import Settings

    with pytest.raises(ValidationError):
        Settings(env="production")
    assert Settings(env="production", secret_key="x" * 40).env == "production"


def test_operation_ids_are_unique(application):
    schema = application.openapi()
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert "create_product" in ids and "list_state_machines" in ids
    assert all(i.isidentifier() and i.islower() and not i.endswith(("_get", "_post")) for i in ids), ids


async def test_request_id_is_echoed(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/healthz")).headers["x-request-id"]) == 32


async def test_bootstrap_operator_created_at_startup(engine, db, client):
    from app.core.config import Settings
    from app.main import create_app

    settings = Settings(
        bootstrap_operator_username="boot-op", bootstrap_operator_password="boot-password", run_sweeper=False, env="test"
    )
    booted = create_app(settings, engine=engine)
    booted.state.sessionmaker = db
    async with booted.router.lifespan_context(booted):
        pass
    r = await client.post("/v1/auth/token", data={"username": "boot-op", "password": "boot-password"})
    assert r.status_code == 200
    token = r.json()["access_token"]
    me = (await client.get("/v1/accounts/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert me["role"] == "operator"


async def test_cors_when_configured(engine, db):
    import httpx

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(cors_origins="https://shop.example", run_sweeper=False, env="test"), engine=engine)
    app.state.sessionmaker = db
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.options("/v1/accounts/me", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"})
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
