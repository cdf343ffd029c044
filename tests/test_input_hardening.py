"""Input hardening, generated from the OpenAPI schema (every operation of its kind, not a hand-picked
few): oversized bodies and strings, wrong JSON types, unknown fields, NUL characters, page sizes,
malformed cursors, malformed / expired / forged tokens, non-JSON bodies and wrong content types
all answer a 4xx `application/problem+json` with the contract's members — never a 2xx, never a 5xx."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from app.core.config import get_settings
from app.core.security import create_token
from app.db.base import new_id
from app.db.pagination import encode_cursor
from app.main import create_app
from tests.conftest import Factory

ROLES = ["merchant", "creator", "agency", "group_leader", "service_provider", "operator", "platform"]
_APP = create_app()
SCHEMA = _APP.openapi()
COMPONENTS = SCHEMA["components"]["schemas"]
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
PUBLIC = {("POST", "/v1/auth/token")}


def _fill(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}",
        lambda m: "2026-01" if "month" in m.group(0) else ("task_order" if m.group(0) == "{name}" else "zz_does_not_exist"),
        path,
    )


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return COMPONENTS[schema["$ref"].rsplit("/", 1)[1]]
    for option in schema.get("anyOf", []):  # an optional body: `X | None`
        if option.get("type") != "null":
            return _resolve(option)
    return schema


def _json_body_ops() -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, methods in SCHEMA["paths"].items():
        for method, op in methods.items():
            content = (op.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                ops.append((method.upper(), path, _resolve(content["application/json"]["schema"])))
    return sorted(ops, key=lambda o: (o[1], o[0]))


JSON_OPS = _json_body_ops()
OPS = sorted((m.upper(), p) for p, ms in SCHEMA["paths"].items() for m in ms if p.startswith("/v1"))


def _query_ops(name: str) -> list[tuple[str, str]]:
    return sorted(
        (m.upper(), p)
        for p, ms in SCHEMA["paths"].items()
        for m, op in ms.items()
        if any(q.get("in") == "query" and q["name"] == name for q in op.get("parameters", []))
    )


LIMIT_OPS = _query_ops("limit")
CURSOR_OPS = _query_ops("cursor")


def _prop_type(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null alternative of a property schema (resolving references)."""
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return _resolve(option)
    return _resolve(prop) if "$ref" in prop else prop


def _wrong_value(prop: dict[str, Any]) -> Any:
    """A JSON value of a type the property never accepts, not even by lax coercion."""
    t = _prop_type(prop)
    kind = t.get("type") or ("string" if "enum" in t or "format" in t else None)
    return {
        "string": {"not": "a string"},
        "integer": "not-a-number",
        "number": "not-a-number",
        "boolean": "not-a-bool",
        "array": "not-a-list",
        "object": "not-an-object",
    }.get(kind)


# an account and a session per role, written for each test by `_sessions` (a token needs a live
# session; the accounts have no data, as bodies are validated before any lookup)
_IDS = {role: (new_id("acc"), new_id("ses")) for role in ROLES}


def tokens() -> dict[str, dict[str, str]]:
    """Bearer headers for every role."""
    return {role: {"Authorization": f"Bearer {create_token(a, role, s)[0]}"} for role, (a, s) in _IDS.items()}


TOKENS = tokens()


@pytest.fixture(autouse=True)
async def _sessions(db) -> None:
    from app.core.clock import real_now
    from app.db.repositories import accounts, auth

    now = real_now()
    async with db() as session:
        for role, (account_id, session_id) in _IDS.items():
            values = {"id": account_id, "role": role, "username": f"hardening-{role}", "password_hash": "x"}
            await accounts.insert_account(session, {**values, "display_name": role, "created_at": now})
            await auth.add_session(session, session_id, account_id, now, now + timedelta(hours=1))
        await session.commit()


def assert_problem(r, *statuses: int) -> dict[str, Any]:
    where = f"{r.request.method} {r.request.url.path} → {r.status_code} {r.text[:300]}"
    assert r.status_code in statuses, where
    assert r.headers["content-type"] == "application/problem+json", where
    body = r.json()
    assert set(body) >= PROBLEM_FIELDS, where
    assert body["status"] == r.status_code and isinstance(body["code"], str) and body["code"], where
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]), where
    if r.status_code == 422 and body["code"] == "validation_failed":
        assert body["errors"] and all({"loc", "msg"} <= set(e) for e in body["errors"]), where
    return body


async def _as_entitled(client, method: str, path: str, headers: dict[str, str] | None = None, **kw):
    """Call as the first role the operation admits (403 is a role check, which runs first)."""
    r = None
    known = _ENTITLED.get((method, path))
    for role in [known] if known else ROLES:
        r = await client.request(method, _fill(path), headers={**TOKENS[role], **(headers or {})}, **kw)
        if r.status_code != 403:
            _ENTITLED[(method, path)] = role
            return r
    return r


_ENTITLED: dict[tuple[str, str], str] = {}


def _locs(body: dict[str, Any]) -> list[list[Any]]:
    return [e["loc"] for e in body.get("errors", [])]


# -- bodies ---------------------------------------------------------------------------------------
async def test_bodies_over_the_size_limit_are_413(client):
    limit = get_settings().max_body_bytes
    big = json.dumps({"title": "x" * (limit + 10)}).encode()
    for method, path, _ in JSON_OPS:
        r = await client.request(
            method, _fill(path), headers={**TOKENS["operator"], "Content-Type": "application/json"}, content=big
        )
        assert_problem(r, 413)
    # streamed without a Content-Length (chunked): counted as it arrives

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    for method, path, _ in JSON_OPS[:10]:
        r = await client.request(
            method, _fill(path), headers={**TOKENS["operator"], "Content-Type": "application/json"}, content=chunks()
        )
        assert_problem(r, 413)
    r = await client.post(
        "/v1/products",
        headers={**TOKENS["merchant"], "Content-Length": "nope", "Content-Type": "application/json"},
        content=b"{}",
    )
    assert r.status_code in (400, 413) and r.status_code < 500


async def test_strings_over_max_length_are_422(client):
    """Every string of every body: one character over its `maxLength`, or 100,000 characters where
    the schema states none (a rule in code, an enum, a pattern) — 422 at that field."""
    checked = 0
    for method, path, schema in JSON_OPS:
        for name, prop in schema.get("properties", {}).items():
            t = _prop_type(prop)
            if t.get("type") == "string":
                too_long: Any = "x" * (t["maxLength"] + 1 if "maxLength" in t else 100_000)
            elif t.get("type") == "array" and _resolve(t.get("items", {})).get("type") == "string":
                item = _resolve(t["items"])
                too_long = ["x" * (item["maxLength"] + 1 if "maxLength" in item else 100_000)]
            else:
                continue
            r = await _as_entitled(client, method, path, json={name: too_long})
            body = assert_problem(r, 422)
            assert any(loc[:2] == ["body", name] for loc in _locs(body)), f"{method} {path} {name}: {body}"
            checked += 1
    assert checked >= 30, checked


async def test_query_strings_over_max_length_are_422(client):
    checked = 0
    for path, methods in SCHEMA["paths"].items():
        for method, op in methods.items():
            for q in op.get("parameters", []):
                t = _prop_type(q["schema"])
                if q["in"] != "query" or t.get("type") != "string" or q["name"] == "cursor":
                    continue
                value = "x" * (t["maxLength"] + 1 if "maxLength" in t else 10_000)
                r = await _as_entitled(client, method.upper(), path, params={q["name"]: value})
                if not path.startswith("/v1"):
                    continue
                body = assert_problem(r, 422)
                assert ["query", q["name"]] in _locs(body), f"{method} {path} {q['name']}: {body}"
                checked += 1
    assert checked >= 5, checked


async def test_wrong_json_types_are_422(client):
    checked = 0
    for method, path, schema in JSON_OPS:
        for name, prop in schema.get("properties", {}).items():
            wrong = _wrong_value(prop)
            if wrong is None:
                continue
            r = await _as_entitled(client, method, path, json={name: wrong})
            body = assert_problem(r, 422)
            assert any(loc[:2] == ["body", name] for loc in _locs(body)), f"{method} {path} {name}: {body}"
            checked += 1
        # the body itself of the wrong type
        for wrong in ([1, 2], "text", 42, True):
            r = await _as_entitled(client, method, path, json=wrong)
            assert_problem(r, 422)
    assert checked >= 50, checked


async def test_unknown_fields_are_422(client):
    for method, path, schema in JSON_OPS:
        if schema.get("type") != "object" or "properties" not in schema:
            continue
        r = await _as_entitled(client, method, path, json={"zz_unknown_field": 1})
        body = assert_problem(r, 422)
        assert ["body", "zz_unknown_field"] in _locs(body), f"{method} {path}: {body}"


async def test_nested_unknown_fields_are_422(client):
    """Nested objects are strict too (e.g. a profile, a cancel reason, a contact)."""
    checked = 0
    for method, path, schema in JSON_OPS:
        for name, prop in schema.get("properties", {}).items():
            t = _prop_type(prop)
            if t.get("type") == "object" and t.get("properties"):
                r = await _as_entitled(client, method, path, json={name: {"zz_unknown_field": 1}})
                body = assert_problem(r, 422)
                assert any(loc[:2] == ["body", name] for loc in _locs(body)), f"{method} {path} {name}: {body}"
                checked += 1
    assert checked >= 3, checked


async def test_non_json_bodies_and_wrong_content_types_are_4xx(client):
    for method, path, _ in JSON_OPS:
        for headers, content in (
            ({"Content-Type": "application/json"}, b"{not json"),
            ({"Content-Type": "application/json"}, b"\xff\xfe\x00garbage"),
            ({"Content-Type": "application/json"}, b'{"a": 1e999999}'),
            ({"Content-Type": "application/json"}, b"[" * 5000 + b"]" * 5000),
            ({"Content-Type": "text/plain"}, b'{"title": "x"}'),
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"title=x"),
            ({"Content-Type": "multipart/form-data; boundary=zz"}, b"--zz--"),
        ):
            r = await _as_entitled(client, method, path, headers=headers, content=content)
            assert_problem(r, 400, 404, 409, 413, 415, 422)


async def test_nul_characters_and_huge_ids_never_reach_the_database_as_errors(client, factory: Factory):
    """PostgreSQL refuses NUL in text: such input must be a 4xx, not a database error."""
    merchant = await factory.user("merchant")
    r = await client.post("/v1/products", headers=merchant.headers, json={"title": "a\u0000b", "price_fen": 1, "inventory": 1})
    assert_problem(r, 422)
    r = await client.patch("/v1/accounts/me", headers=merchant.headers, json={"display_name": "x\u0000"})
    assert_problem(r, 422)
    for method, path in OPS:
        if "{" not in path or (method, path) in PUBLIC:
            continue
        for bad in ("a%00b", "x" * 5000, "%F0%9F%92%A9", "..%2F..%2Fetc"):
            url = re.sub(r"\{[^}]+\}", bad, path)
            r = await client.request(
                method, url, headers=TOKENS["operator"], json={} if method in ("POST", "PUT", "PATCH") else None
            )
            assert r.status_code < 500, f"{method} {url[:120]} → {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"] == "application/problem+json", f"{method} {url[:120]}"
    for method, path in CURSOR_OPS:
        r = await client.request(method, _fill(path), headers=TOKENS["operator"], params={"cursor": "a\x00b"})
        assert r.status_code < 500, f"{method} {path} → {r.status_code} {r.text[:200]}"


# -- page sizes and cursors ----------------------------------------------------------------------
async def test_page_sizes_out_of_range_are_422(client):
    assert len(LIMIT_OPS) >= 20
    for method, path in LIMIT_OPS:
        for bad in ("101", "100000000000000000000", "0", "-1", "abc", "1.5", ""):
            r = await _as_entitled(client, method, path, params={"limit": bad})
            body = assert_problem(r, 422)
            assert ["query", "limit"] in _locs(body), f"{method} {path} limit={bad}: {body}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MALFORMED_CURSORS = [
    "!!!not-base64!!!",
    "%%%",
    "a",
    "====",
    _b64(b"\xff\xfe\xfd garbage"),
    _b64(b"not json at all"),
    _b64(b"{}"),
    _b64(b"[]"),
    _b64(b"123"),
    _b64(b"null"),
    _b64(b'["x"]'),
    _b64(b'{"id": "acc_1"}'),
    _b64(b'"\\u0000"'),
    _b64(b'"' + b"z" * 100 + b'"'),
    _b64(b'["2026-01-01T00:00:00", "x"]'),
    _b64(b'["not a time", "x"]'),
    "x" * 201,
]


async def test_malformed_cursors_are_422(client):
    assert len(CURSOR_OPS) >= 20
    for method, path in CURSOR_OPS:
        for bad in MALFORMED_CURSORS:
            r = await _as_entitled(client, method, path, params={"cursor": bad})
            assert_problem(r, 400, 404, 422)


async def test_a_cursor_of_another_list_is_refused(client, factory: Factory):
    """A real `next_cursor` of one list, sent to a list of another kind, is a 422 — not a page."""
    merchant = await factory.user("merchant")
    for i in range(2):
        await factory.user("creator")
        r = await client.post("/v1/products", headers=merchant.headers, json={"title": f"P{i}", "price_fen": 1, "inventory": 1})
        assert r.status_code == 201, r.text
    creators = (await client.get("/v1/creators", headers=merchant.headers, params={"limit": 1})).json()
    products = (await client.get("/v1/products", headers=merchant.headers, params={"limit": 1})).json()
    cursors = [c for c in (creators["next_cursor"], products["next_cursor"], encode_cursor(new_id("zzz"))) if c]
    assert len(cursors) == 3
    for method, path in CURSOR_OPS:
        accepted = []
        for cursor in cursors:
            r = await _as_entitled(client, method, path, params={"cursor": cursor})
            if r.status_code == 200:
                accepted.append(cursor)
            else:
                assert_problem(r, 400, 404, 422)
        assert len(accepted) <= 1, f"{method} {path} pages with cursors of different lists"


# -- tokens ---------------------------------------------------------------------------------------
def _forged_tokens() -> dict[str, str]:
    s = get_settings()
    now = datetime.now(UTC)
    claims = {"sub": new_id("acc"), "role": "operator", "sid": new_id("ses"), "iat": now, "exp": now + timedelta(hours=1)}
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({**claims, "iat": int(now.timestamp()), "exp": int(now.timestamp()) + 3600}).encode())
    valid = jwt.encode(claims, s.secret_key, algorithm="HS256")
    return {
        "garbage": "garbage",
        "three dots": "a.b.c",
        "empty parts": "..",
        "alg none": f"{header}.{payload}.",
        "alg none with a signature": f"{header}.{payload}.{valid.split('.')[2]}",
        "wrong signature": jwt.encode(claims, "another-secret-key-of-enough-length", algorithm="HS256"),
        "expired": jwt.encode(
            {**claims, "iat": now - timedelta(days=2), "exp": now - timedelta(days=1)}, s.secret_key, algorithm="HS256"
        ),
        "not yet valid": jwt.encode({**claims, "nbf": now + timedelta(days=1)}, s.secret_key, algorithm="HS256"),
        "no exp": jwt.encode({"sub": claims["sub"], "role": "operator"}, s.secret_key, algorithm="HS256"),
        "no role": jwt.encode({"sub": claims["sub"], "exp": claims["exp"]}, s.secret_key, algorithm="HS256"),
        "no sub": jwt.encode({"role": "operator", "exp": claims["exp"]}, s.secret_key, algorithm="HS256"),
        "HS512": jwt.encode(claims, s.secret_key, algorithm="HS512"),
        "tampered role": valid.split(".")[0]
        + "."
        + _b64(json.dumps({**claims, "role": "operator", "sub": "acc_other", "iat": 0, "exp": 4102444800}).encode())
        + "."
        + valid.split(".")[2],
        "unknown role": jwt.encode({**claims, "role": "superuser"}, s.secret_key, algorithm="HS256"),
        # as long as a header may be (8 KiB, security.md; longer is 431 headers_too_large,
        # tests/test_hardening.py)
        "huge": "a" * (8 * 1024 - len("authorization") - len("Bearer ")),
        "non-ascii": "токен",
    }


FORGED = _forged_tokens()


@pytest.mark.parametrize("name", sorted(FORGED))
async def test_bad_tokens_are_401_everywhere(client, name):
    token = FORGED[name]
    for method, path in OPS:
        if (method, path) in PUBLIC:
            continue
        headers = {"Authorization": f"Bearer {token}".encode()}  # bytes: non-ASCII goes out as UTF-8
        r = await client.request(method, _fill(path), headers=headers, json={} if method in ("POST", "PUT", "PATCH") else None)
        body = assert_problem(r, 401)
        assert body["code"] == "unauthenticated"


async def test_other_authorization_schemes_are_401(client):
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer", "Token abc", "Bearer a b"):
        for method, path in OPS[:: max(1, len(OPS) // 25)]:
            if (method, path) in PUBLIC:
                continue
            r = await client.request(method, _fill(path), headers={"Authorization": value})
            assert_problem(r, 401)


async def test_the_token_endpoint_rejects_bad_input_as_problems(client):
    for data in (
        {},
        {"username": "x"},
        {"username": "x" * 10000, "password": "y"},
        {"username": "no", "password": "no"},
        {"username": "a\x00b", "password": "p"},
    ):
        r = await client.post("/v1/auth/token", data=data)
        assert_problem(r, 400, 401, 422)
    r = await client.post("/v1/auth/token", json={"username": "x", "password": "y"})
    assert_problem(r, 400, 401, 415, 422)
