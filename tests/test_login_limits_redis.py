"""The failed-login limits with `LC_REDIS_URL` set (security.md: the counts "kept in PostgreSQL,
or Redis when `LC_REDIS_URL` is set"), against the machine's real Redis on loopback
(`LC_TEST_REDIS_URL`, default database 15 of 127.0.0.1:6379). Each test has its own key
prefix and removes its keys. Without a Redis the tests skip with a message, or fail with
`LC_REQUIRE_REDIS=1` (CI)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from sqlalchemy import func, select

from app.core.config import get_settings
from app.db import redis as redis_store
from app.db.models.accounts import LoginFailure
from tests.conftest import Factory, reachable
from tests.test_sessions import login

REDIS_URL = os.environ.get("LC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def prefix(monkeypatch):
    if not reachable(REDIS_URL, 6379):
        message = f"no Redis at {REDIS_URL} (set LC_TEST_REDIS_URL)"
        if os.environ.get("LC_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    name = f"lc-test-{uuid.uuid4().hex[:12]}"
    settings = get_settings()
    monkeypatch.setattr(settings, "redis_url", REDIS_URL)
    monkeypatch.setattr(settings, "redis_key_prefix", name)
    yield name
    redis = redis_store.client(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)


async def _rows_in_the_database(db, username: str) -> int:
    async with db() as session:
        return (await session.execute(select(func.count()).where(LoginFailure.username == username))).scalar_one()


async def test_ten_failures_lock_a_username_in_redis_until_the_window_passes(client, db, factory: Factory, prefix):
    creator = await factory.user("creator")
    for _ in range(10):
        r = await login(client, creator.username, "wrong-password-1", address="203.0.113.7")
        assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = await login(client, creator.username, address="203.0.113.7")  # even the right password
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert 0 < int(r.headers["Retry-After"]) <= 900
    assert (await login(client, creator.username, address="198.51.100.9")).status_code == 429  # from anywhere
    # the counts are in Redis, not in the table
    assert await _rows_in_the_database(db, creator.username) == 0
    redis = client_of_test()
    assert await redis.zcard(f"{prefix}:login:u:{creator.username}") == 10
    assert 0 < await redis.ttl(f"{prefix}:login:u:{creator.username}") <= 900  # Redis keeps nothing longer
    await factory.advance(901)  # the window passes (business time)
    assert (await login(client, creator.username, address="203.0.113.7")).status_code == 200


async def test_a_success_forgets_only_its_own_addresses_failures_in_redis(client, factory: Factory, prefix):
    creator = await factory.user("creator")
    for _ in range(4):
        await login(client, creator.username, "wrong-password-1", address="203.0.113.1")
    for _ in range(5):
        await login(client, creator.username, "wrong-password-1", address="203.0.113.2")
    assert (await login(client, creator.username, address="203.0.113.1")).status_code == 200  # forgets .1's four
    redis = client_of_test()
    assert await redis.zcard(f"{prefix}:login:u:{creator.username}") == 5
    for _ in range(5):
        r = await login(client, creator.username, "wrong-password-1", address="203.0.113.3")
        assert r.status_code == 401
    assert (await login(client, creator.username, address="203.0.113.1")).status_code == 429  # .2's five count still


async def test_a_hundred_failures_from_one_address_lock_it_in_redis(client, factory: Factory, prefix):
    creator = await factory.user("creator")
    for i in range(100):
        assert (await login(client, f"guess{i}", "wrong-password-1", address="192.0.2.50")).status_code == 401
    r = await login(client, creator.username, address="192.0.2.50")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert (await login(client, creator.username, address="192.0.2.51")).status_code == 200


async def test_failures_another_replica_wrote_to_redis_count_here(client, factory: Factory, prefix):
    creator = await factory.user("creator")
    now = await factory.now()
    other_replica = redis_store.RedisFailures(REDIS_URL, prefix, 900)
    for i in range(10):
        await other_replica.add(f"lgf_other{i}", creator.username, "198.51.100.77", now, now.replace(year=now.year - 1))
    r = await login(client, creator.username, address="203.0.113.200")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"


async def test_an_unreachable_redis_answers_503_not_500_nor_an_unchecked_login(client, factory: Factory, prefix, monkeypatch):
    creator = await factory.user("creator")
    monkeypatch.setattr(get_settings(), "redis_url", f"redis://127.0.0.1:{_closed_port()}/0")
    r = await login(client, creator.username, "wrong-password-1")
    assert r.status_code == 503 and r.json()["code"] == "service_unavailable"
    assert int(r.headers["Retry-After"]) > 0
    r = await login(client, creator.username)
    assert r.status_code == 503  # no login while the limits cannot be checked
    monkeypatch.setattr(get_settings(), "redis_url", REDIS_URL)
    assert (await login(client, creator.username)).status_code == 200


def client_of_test():
    return redis_store.client(REDIS_URL)
