"""Authorization matrix generated from the route table, so that a new route cannot escape it:
- every `/v1` operation but the token endpoint answers 401 without a token;
- every operation that takes an id, called by every role with an id that is not theirs to see
  (here: one that does not exist), answers 403/404 (or 422/409 for a body it rejects first) —
  never a 2xx, never a 5xx.
`tests/test_authz_foreign.py` does the same on REAL resources owned by other accounts (every
resource kind has a builder), and checks that the legitimate parties are served."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from app.main import create_app

ROLES = ["merchant", "creator", "agency", "group_leader", "service_provider", "operator", "platform"]
PUBLIC = {("POST", "/v1/auth/token")}
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


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "2026-01" if "month" in m.group(0) else "zz_does_not_exist", path)


@pytest.mark.parametrize("method,path", [r for r in ROUTES if r not in PUBLIC])
async def test_needs_a_token(client, method, path):
    r = await client.request(method, _fill(path), json={} if method in ("POST", "PUT", "PATCH") else None)
    assert r.status_code == 401, f"{method} {path} → {r.status_code}"
    assert r.json()["code"] == "unauthenticated"


@pytest.mark.parametrize("method,path", WITH_ID)
async def test_unknown_ids_are_never_served(client, factory, method, path):
    for role in ROLES:
        user = await factory.operator() if role == "operator" else await factory.user(role)
        r = await client.request(
            method, _fill(path), headers=user.headers, json={} if method in ("POST", "PUT", "PATCH") else None
        )
        assert r.status_code in (403, 404, 409, 422), f"{role}: {method} {path} → {r.status_code} {r.text[:200]}"
        assert r.headers["content-type"] == "application/problem+json"
