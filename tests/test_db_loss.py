"""When the database goes away (security.md): a request that cannot reach it answers 503
`service_unavailable` problem+json with `Retry-After`, never 500; `/readyz` says 503 and
`/healthz` stays 200; after the database is back (or its connections were killed) the next
request succeeds, with no restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from app.api.errors import database_unavailable
from app.core.config import get_settings
from app.core.security import create_token
from app.db.repositories import webhooks as webhooks_repo
from app.db.session import make_engine
from app.main import create_app
from tests.conftest import TEST_DATABASE_URL, postgres_only

_APP_NAME = "lc-db-loss-test"


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def _client_for(url: str, **engine_kwargs) -> tuple[httpx.AsyncClient, object]:
    engine = make_engine(url, **engine_kwargs)
    application = create_app(get_settings(), engine=engine)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test")
    return client, engine


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////nonexistent-lc-directory/missing/live_collab.db",  # SQLite: "unable to open"
        "postgresql+asyncpg://postgres@127.0.0.1:1/missing",  # PostgreSQL: nothing listens (loopback)
    ],
    ids=["sqlite-missing-file", "postgres-refused"],
)
async def test_missing_database_is_503_for_login_and_requests(url: str) -> None:
    client, engine = await _client_for(url)
    try:
        login = await client.post("/v1/auth/token", data={"username": "someone", "password": "whatever-password"})
        _assert_unavailable(login)
        # a signed token: its session cannot be checked without the database either
        token, _ = create_token("acc_00000000000000000000000000", "merchant", "ses_00000000000000000000000000")
        listed = await client.get("/v1/webhooks", headers={"Authorization": f"Bearer {token}"})
        _assert_unavailable(listed)
        _assert_unavailable(await client.get("/readyz"))
        assert (await client.get("/healthz")).status_code == 200
    finally:
        await client.aclose()
        await engine.dispose()  # type: ignore[attr-defined]


def test_connection_errors_are_recognised_and_others_are_not() -> None:
    import sqlite3

    import asyncpg
    from sqlalchemy.exc import DBAPIError, OperationalError

    assert database_unavailable(ConnectionRefusedError(111, "Connection refused"))
    assert database_unavailable(OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file")))
    killed = asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")
    assert database_unavailable(DBAPIError("SELECT 1", {}, killed))
    assert database_unavailable(
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    )
    assert not database_unavailable(OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: x")))
    assert not database_unavailable(ValueError("connection"))


# --------------------------------------------------------------------------- PostgreSQL: killed connections
async def _terminate_service_connections() -> int:
    """pg_terminate_backend on every connection of the service under test, from a separate
    connection (on the test's own database)."""
    other = make_engine(TEST_DATABASE_URL, pool_size=1, ping_idle_seconds=3600)
    try:
        async with other.connect() as conn:
            killed = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database() AND pid <> pg_backend_pid()"
                ),
                {"name": _APP_NAME},
            )
            count = int(killed.scalar() or 0)
            await conn.commit()
    finally:
        await other.dispose()
    await asyncio.sleep(0.2)  # the backends end
    return count


@pytest.fixture
async def service(request, engine) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A service with its own engine and pool (its connections are named, so the test kills
    only those); `ping_idle_seconds` from the test's parameter (default: an hour, no ping)."""
    ping = getattr(request, "param", 3600.0)
    client, engine = await _client_for(
        TEST_DATABASE_URL, pool_size=4, ping_idle_seconds=ping, connect_args={"server_settings": {"application_name": _APP_NAME}}
    )
    token, account_id = await _merchant_session(engine)
    try:
        yield client, {"Authorization": f"Bearer {token}"}
    finally:
        await client.aclose()
        async with engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(text("DELETE FROM auth_sessions WHERE account_id = :a"), {"a": account_id})
            await conn.execute(text("DELETE FROM accounts WHERE id = :a"), {"a": account_id})
        await engine.dispose()  # type: ignore[attr-defined]


async def _merchant_session(engine) -> tuple[str, str]:
    """A merchant with a live session (a token needs one), committed for the service to see."""
    import uuid

    from app.db.session import make_sessionmaker
    from app.domain.accounts import AccountCreate, Profile, Role, create_account, start_session

    async with make_sessionmaker(engine)() as session:
        account = await create_account(
            session,
            AccountCreate(
                role=Role.merchant,
                username=f"dbloss-{uuid.uuid4().hex[:8]}",
                password="password-123",
                display_name="M",
                profile=Profile(shop_name="S"),
            ),
        )
        token = (await start_session(session, account.id, "merchant")).access_token
        await session.commit()
    return token, account.id


@postgres_only
async def test_connections_terminated_mid_request_answer_503_then_recover(service, monkeypatch) -> None:
    client, headers = service
    assert (await client.get("/v1/webhooks", headers=headers)).status_code == 200  # a pooled connection

    original = webhooks_repo.subscriptions_page
    killed: list[int] = []

    async def terminated_meanwhile(session, *args, **kwargs):
        await session.execute(text("SELECT 1"))  # this request holds its connection now
        killed.append(await _terminate_service_connections())
        return await original(session, *args, **kwargs)

    monkeypatch.setattr(webhooks_repo, "subscriptions_page", terminated_meanwhile)
    _assert_unavailable(await client.get("/v1/webhooks", headers=headers))
    assert killed and killed[0] >= 1
    monkeypatch.setattr(webhooks_repo, "subscriptions_page", original)

    # recovery: the very next requests succeed on fresh connections
    for _ in range(3):
        assert (await client.get("/v1/webhooks", headers=headers)).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


@postgres_only
async def test_connections_killed_while_pooled_cost_no_request(service) -> None:
    """No ping (the connections were idle less than LC_DB_PING_IDLE_SECONDS), and no request in
    flight when the server ended them: asyncpg has seen them closed, the pool replaces them at
    checkout, and every next request succeeds (security.md: a restart costs at most the
    requests in flight)."""
    client, headers = service
    responses = await asyncio.gather(*(client.get("/v1/webhooks", headers=headers) for _ in range(3)))
    assert all(r.status_code == 200 for r in responses)  # several pooled connections
    assert await _terminate_service_connections() >= 1
    for _ in range(5):
        r = await client.get("/v1/webhooks", headers=headers)
        assert r.status_code == 200, r.text
    responses = await asyncio.gather(*(client.get("/v1/webhooks", headers=headers) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4


@postgres_only
@pytest.mark.parametrize("service", [0.0], indirect=True)
async def test_idle_connections_are_pinged_before_reuse(service) -> None:
    """With LC_DB_PING_IDLE_SECONDS passed, a connection killed while it sat in the pool is
    found dead at checkout and replaced: no request fails."""
    client, headers = service
    assert (await client.get("/v1/webhooks", headers=headers)).status_code == 200
    assert await _terminate_service_connections() >= 1
    assert (await client.get("/v1/webhooks", headers=headers)).status_code == 200


async def test_background_jobs_log_an_outage_in_one_line(caplog) -> None:
    """A periodic job that cannot reach the database logs a warning per run (no traceback) and
    tries again; other failures keep their traceback."""
    import logging

    from app import workers

    runs: list[str] = []

    async def outage(_maker) -> int:
        runs.append("outage")
        raise ConnectionRefusedError(111, "Connection refused")

    async def broken(_maker) -> int:
        runs.append("broken")
        raise ValueError("a bug")

    jobs = [workers.Periodic("outage", 0.01, outage), workers.Periodic("broken", 0.01, broken)]
    with caplog.at_level(logging.WARNING, logger="app.workers"), pytest.raises(TimeoutError):
        await asyncio.wait_for(workers.run_forever(None, 0.01, jobs), 0.1)  # type: ignore[arg-type]
    assert runs.count("outage") >= 2 and runs.count("broken") >= 2
    outage_logs = [r for r in caplog.records if "outage" in r.getMessage()]
    broken_logs = [r for r in caplog.records if "broken" in r.getMessage()]
    assert outage_logs and all(r.levelno == logging.WARNING and r.exc_info is None for r in outage_logs)
    assert "database unavailable" in outage_logs[0].getMessage()
    assert broken_logs and all(r.levelno == logging.ERROR and r.exc_info for r in broken_logs)
