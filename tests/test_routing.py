"""Route matching with the literal-prefix shortcut (`TxRoute.literal_prefix`): every route is
still found, a path of no route is 404, a known path with another method is 405 (Starlette's
partial match survives the shortcut), and behind a `root_path` Starlette's matching decides."""

from __future__ import annotations

import httpx

from app.api.routing import TxRoute


async def test_every_flat_route_has_its_literal_prefix(application):
    routes = [r for r in application.routes if isinstance(r, TxRoute)]
    assert len(routes) > 100
    for route in routes:
        assert route.literal_prefix is not None and route.path.startswith(route.literal_prefix)
        assert "{" not in route.literal_prefix


async def test_routes_are_found_and_misses_answer_404_and_405(client, factory):
    merchant = await factory.user("merchant")
    assert (await client.get("/v1/wallet", headers=merchant.headers)).status_code == 200
    r = await client.get("/v1/task-orders/tko_missing/history", headers=merchant.headers)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/v1/no-such-thing", headers=merchant.headers)
    assert r.status_code == 404
    r = await client.delete("/v1/wallet", headers=merchant.headers)
    assert r.status_code == 405


async def test_behind_a_root_path(application, db, factory):
    merchant = await factory.user("merchant")
    transport = httpx.ASGITransport(app=application, root_path="/lc")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as behind:
        assert (await behind.get("/lc/v1/wallet", headers=merchant.headers)).status_code == 200
        assert (await behind.get("/v1/wallet", headers=merchant.headers)).status_code == 200
