"""The suite runs on SQLite by default and on PostgreSQL when `LC_TEST_DATABASE_URL` is set.

Each test runs inside an outer transaction that is rolled back at the end: every request's
session joins it through a savepoint (`join_transaction_mode="create_savepoint"`), so a
request's commit is real to the code under test and nothing leaks into the next test. Tests of
real concurrency (PostgreSQL) use `committed_app` instead, with their own connections and a
clean-up afterwards."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("LC_ENV", "test")
os.environ["LC_RUN_SWEEPER"] = "false"
os.environ.setdefault("LC_ARGON2_TIME_COST", "1")
os.environ.setdefault("LC_ARGON2_MEMORY_COST_KIB", "1024")
os.environ.setdefault("LC_LOG_LEVEL", "WARNING")
os.environ.setdefault("LC_LOG_JSON", "false")
_TMP = tempfile.mkdtemp(prefix="lc-test-")
TEST_DATABASE_URL = os.environ.get("LC_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{_TMP}/test.db"
os.environ["LC_DATABASE_URL"] = TEST_DATABASE_URL

import socket  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

import app.db.models  # noqa: E402,F401
from app.core.config import get_settings  # noqa: E402
from app.db.base import Base  # noqa: E402
from app.db.session import make_engine, make_sessionmaker  # noqa: E402
from app.main import create_app  # noqa: E402

IS_POSTGRES = TEST_DATABASE_URL.startswith("postgresql")
postgres_only = pytest.mark.skipif(not IS_POSTGRES, reason="needs PostgreSQL (LC_TEST_DATABASE_URL)")


def reachable(url: str, default_port: int = 0) -> bool:
    """Whether a server answers a TCP connect at the URL's host and port (loopback in tests)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
async def engine():
    engine = make_engine(TEST_DATABASE_URL)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def application(engine):
    return create_app(get_settings(), engine=engine)


@pytest.fixture
async def db(engine, application) -> AsyncIterator[async_sessionmaker]:
    """Bind the app to one connection whose outer transaction is rolled back after the test."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        maker = async_sessionmaker(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
        previous = application.state.sessionmaker
        application.state.sessionmaker = maker
        try:
            yield maker
        finally:
            application.state.sessionmaker = previous
            if outer.is_active:
                await outer.rollback()


@pytest.fixture
async def client(application, db) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@dataclass
class User:
    id: str
    role: str
    username: str
    headers: dict[str, str]
    account: dict[str, Any]


_DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "merchant": {"shop_name": "Shop", "alliance_member": True, "experience_score": "4.50"},
    "creator": {
        "nickname": "Creator",
        "level": 3,
        "followers": 1000,
        "accepting_orders": True,
        "quotes": {"dedicated_hourly_fen": 100000, "shared_hourly_fen": 40000},
        "contact": {"phone": "13800138000", "wechat": "wx_creator"},
    },
    "agency": {"name": "Agency", "head_annual": False},
    "group_leader": {"name": "Leader"},
    "service_provider": {"name": "Provider", "certified": True},
    "operator": {},
    "platform": {},
}


class Factory:
    """Creates accounts through the API (as the operator) and hands back ready headers."""

    def __init__(self, client: httpx.AsyncClient, maker: async_sessionmaker) -> None:
        self.client = client
        self.maker = maker
        self.counter = 0
        self._operator: User | None = None
        # helpers that only get the client (e.g. pushing upstream facts, which may not lie in the
        # future: security.md) move the test clock through the factory
        client.lc_factory = self  # type: ignore[attr-defined]

    async def operator(self) -> User:
        if self._operator is None:
            from app.domain.accounts import AccountCreate, Role, create_account

            async with self.maker() as session:
                account = await create_account(
                    session,
                    AccountCreate(role=Role.operator, username="root-operator", password="operator-pass", display_name="Ops"),
                )
                await session.commit()
            token = await self.token(account.id, "operator")
            self._operator = User(account.id, "operator", "root-operator", {"Authorization": f"Bearer {token}"}, {})
        return self._operator

    async def token(self, account_id: str, role: str) -> str:
        """A bearer token of a new session of the account (as a login would start)."""
        from app.domain.accounts import start_session

        async with self.maker() as session:
            issued = await start_session(session, account_id, role)
            await session.commit()
        return issued.access_token

    async def user(self, role: str, **profile: Any) -> User:
        op = await self.operator()
        self.counter += 1
        username = f"{role}{self.counter}"
        merged = {**_DEFAULT_PROFILES[role], **profile}
        if role == "creator" and "nickname" not in profile:
            merged["nickname"] = f"Creator {self.counter}"
        if role == "merchant" and "shop_name" not in profile:
            merged["shop_name"] = f"Shop {self.counter}"
        r = await self.client.post(
            "/v1/accounts",
            headers=op.headers,
            json={"role": role, "username": username, "password": "password-123", "display_name": username, "profile": merged},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        token = await self.token(body["id"], role)
        return User(body["id"], role, username, {"Authorization": f"Bearer {token}"}, body)

    async def advance(self, seconds: int) -> dict[str, Any]:
        op = await self.operator()
        r = await self.client.post("/v1/admin/clock/advance", headers=op.headers, json={"seconds": seconds})
        assert r.status_code == 200, r.text
        return r.json()

    async def advance_to(self, moment) -> None:
        """Move the test clock forward to `moment` (no-op when it is there already)."""
        ahead = (moment - await self.now()).total_seconds()
        if ahead > 0:
            await self.advance(int(ahead) + 1)

    async def now(self):
        from datetime import datetime

        op = await self.operator()
        r = await self.client.get("/v1/admin/clock", headers=op.headers)
        return datetime.fromisoformat(r.json()["now"])


@pytest.fixture
async def factory(client, db) -> Factory:
    return Factory(client, db)


@pytest.fixture
async def committed_app(engine) -> AsyncIterator[Any]:
    """An app on real, separately committing connections (for concurrency tests). Every table
    is emptied afterwards."""
    application = create_app(get_settings(), engine=engine)
    application.state.sessionmaker = make_sessionmaker(engine)
    yield application
    async with engine.begin() as conn:
        if IS_POSTGRES:
            names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())


@pytest.fixture
async def committed_client(committed_app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=committed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def committed_factory(committed_client, committed_app) -> Factory:
    """Like `factory`, but every write commits for real (use with `postgres_only`)."""
    return Factory(committed_client, committed_app.state.sessionmaker)


# --------------------------------------------------------------------------- webhook targets
# Names the suite uses in webhook URLs, with the (public, never contacted) addresses a stub
# resolver gives them. No test looks a name up for real: any other name does not resolve.
TEST_HOSTS: dict[str, list[str]] = {
    "example.com": ["93.184.215.14"],
    "hooks.example": ["93.184.215.14"],
    "x.io": ["93.184.215.14"],
}


@pytest.fixture(autouse=True)
def stub_resolver(monkeypatch) -> dict[str, list[str]]:
    """Every test resolves webhook host names with this stub (a dict a test may extend), so a
    refusal never depends on, nor causes, a real lookup or connection."""
    from app.domain.webhooks import targets

    names = {k: list(v) for k, v in TEST_HOSTS.items()}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError(f"the test resolver does not know {host}")
        return names[host]

    monkeypatch.setattr(targets, "RESOLVE", resolve)
    return names


@pytest.fixture
def loopback_receivers(monkeypatch) -> None:
    """LC_WEBHOOK_ALLOWED_HOSTS=127.0.0.1: the suite's receivers listen on loopback."""
    monkeypatch.setattr(get_settings(), "webhook_allowed_hosts", ["127.0.0.1"])
