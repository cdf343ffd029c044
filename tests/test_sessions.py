"""Sessions that can end and logins that resist guessing (security.md, issue #16 findings 2-3):
logout, a password change with the current password, suspension and reinstatement, tokens of
accounts that do not exist, the ≤ 1 s liveness bound, weak passwords, equal work for unknown
usernames, and the failed-login limits with `Retry-After`."""

from __future__ import annotations

import asyncio

import pytest

from app.core import security
from app.core.config import get_settings
from app.core.security import create_token
from app.db.base import new_id
from tests.conftest import Factory

PASSWORD = "password-123"  # the factory's


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client, username: str, password: str = PASSWORD, *, address: str | None = None):
    headers = {"X-Forwarded-For": address} if address else {}
    return await client.post("/v1/auth/token", data={"username": username, "password": password}, headers=headers)


async def token_of(client, username: str, password: str = PASSWORD) -> str:
    r = await login(client, username, password)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code, body
    return body


# -- logout ------------------------------------------------------------------------------------
async def test_logout_ends_only_the_callers_session(client, factory: Factory):
    creator = await factory.user("creator")
    first, second = await token_of(client, creator.username), await token_of(client, creator.username)
    assert (await client.get("/v1/accounts/me", headers=bearer(first))).status_code == 200
    r = await client.post("/v1/auth/logout", headers=bearer(first))
    assert r.status_code == 204 and r.content == b""
    problem(await client.get("/v1/accounts/me", headers=bearer(first)), 401, "unauthenticated")
    problem(await client.post("/v1/auth/logout", headers=bearer(first)), 401, "unauthenticated")
    assert (await client.get("/v1/accounts/me", headers=bearer(second))).status_code == 200
    problem(await client.post("/v1/auth/logout"), 401, "unauthenticated")


# -- password change ---------------------------------------------------------------------------
async def test_password_change_needs_the_current_password_and_ends_the_other_sessions(client, factory: Factory):
    merchant = await factory.user("merchant")
    current, other = await token_of(client, merchant.username), await token_of(client, merchant.username)
    path = "/v1/accounts/me/password"
    r = await client.post(path, headers=bearer(current), json={"current_password": "not-the-password", "new_password": "x" * 3})
    problem(r, 403, "wrong_password")
    for weak in ("password", "12345678", "short-pw", "1234567890", "Password123", "aaaaaaaaaaaa"):
        r = await client.post(path, headers=bearer(current), json={"current_password": PASSWORD, "new_password": weak})
        assert problem(r, 422, "weak_password")["detail"], weak
    assert (await client.get("/v1/accounts/me", headers=bearer(other))).status_code == 200  # nothing changed yet
    r = await client.post(path, headers=bearer(current), json={"current_password": PASSWORD, "new_password": "a fresh one 2026"})
    assert r.status_code == 204, r.text
    assert (await client.get("/v1/accounts/me", headers=bearer(current))).status_code == 200
    problem(await client.get("/v1/accounts/me", headers=bearer(other)), 401, "unauthenticated")
    problem(await client.get("/v1/products", headers=merchant.headers), 401, "unauthenticated")  # the factory's session too
    problem(await login(client, merchant.username), 401, "invalid_credentials")
    assert (await login(client, merchant.username, "a fresh one 2026")).status_code == 200


async def test_patch_me_no_longer_takes_a_password(client, factory: Factory):
    creator = await factory.user("creator")
    r = await client.patch("/v1/accounts/me", headers=creator.headers, json={"password": "another-password-1"})
    assert r.status_code == 422, r.text
    assert (await login(client, creator.username, "another-password-1")).status_code == 401
    assert (await login(client, creator.username)).status_code == 200
    op = await factory.operator()
    r = await client.patch(f"/v1/accounts/{creator.id}", headers=op.headers, json={"password": "another-password-1"})
    assert r.status_code == 422, r.text


# -- weak passwords ----------------------------------------------------------------------------
@pytest.mark.parametrize("weak", ["password", "12345678", "short", "1234567890", "qwertyuiop", "PASSWORD1234"])
async def test_weak_passwords_are_refused_for_new_accounts(client, factory: Factory, weak):
    op = await factory.operator()
    body = {
        "role": "creator",
        "username": f"weak{len(weak)}",
        "password": weak,
        "display_name": "W",
        "profile": {"nickname": "W"},
    }
    r = await client.post("/v1/accounts", headers=op.headers, json=body)
    assert problem(r, 422, "weak_password")["errors"][0]["loc"] == ["body", "password"]


async def test_a_long_uncommon_password_is_accepted(client, factory: Factory):
    op = await factory.operator()
    body = {
        "role": "creator",
        "username": "strong1",
        "password": "violet-kettle-42",
        "display_name": "S",
        "profile": {"nickname": "S"},
    }
    assert (await client.post("/v1/accounts", headers=op.headers, json=body)).status_code == 201
    assert (await login(client, "strong1", "violet-kettle-42")).status_code == 200


# -- suspension --------------------------------------------------------------------------------
async def test_suspension_ends_every_session_and_refuses_login_until_reinstated(client, factory: Factory):
    op = await factory.operator()
    creator = await factory.user("creator")
    tokens = [await token_of(client, creator.username) for _ in range(2)]
    merchant = await factory.user("merchant")
    problem(
        await client.post(f"/v1/accounts/{creator.id}/suspend", headers=merchant.headers, json={"reason": "x"}), 403, "forbidden"
    )
    problem(
        await client.post(f"/v1/accounts/{new_id('acc')}/suspend", headers=op.headers, json={"reason": "x"}), 404, "not_found"
    )
    assert (await client.post(f"/v1/accounts/{creator.id}/suspend", headers=op.headers, json={})).status_code == 422
    r = await client.post(f"/v1/accounts/{creator.id}/suspend", headers=op.headers, json={"reason": "fake followers"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == creator.id
    for token in [*tokens, creator.headers["Authorization"].split()[1]]:
        problem(await client.get("/v1/accounts/me", headers=bearer(token)), 401, "unauthenticated")
    problem(await login(client, creator.username), 401, "account_suspended")
    problem(await login(client, creator.username, "wrong-password-1"), 401, "invalid_credentials")  # reveals nothing
    assert (await client.get("/v1/accounts/me", headers=merchant.headers)).status_code == 200  # others go on
    r = await client.post(f"/v1/accounts/{creator.id}/reinstate", headers=op.headers)
    assert r.status_code == 200, r.text
    fresh = await token_of(client, creator.username)
    assert (await client.get("/v1/accounts/me", headers=bearer(fresh))).status_code == 200
    problem(await client.get("/v1/accounts/me", headers=bearer(tokens[0])), 401, "unauthenticated")  # ended stays ended


async def test_an_operator_cannot_suspend_themselves(client, factory: Factory):
    op = await factory.operator()
    r = await client.post(f"/v1/accounts/{op.id}/suspend", headers=op.headers, json={"reason": "oops"})
    problem(r, 403, "forbidden")


# -- tokens without a live session -------------------------------------------------------------
async def test_a_signed_token_of_an_account_or_session_that_does_not_exist_is_401(client, factory: Factory):
    op = await factory.operator()
    ghost, _ = create_token(new_id("acc"), "operator", new_id("ses"))
    problem(await client.get("/v1/admin/clock", headers=bearer(ghost)), 401, "unauthenticated")
    problem(await client.post("/v1/admin/clock/advance", headers=bearer(ghost), json={"seconds": 60}), 401, "unauthenticated")
    no_session, _ = create_token(op.id, "operator", new_id("ses"))  # a real account, no such session
    problem(await client.get("/v1/admin/clock", headers=bearer(no_session)), 401, "unauthenticated")


async def test_a_token_whose_role_the_account_does_not_have_is_401(client, factory: Factory):
    creator = await factory.user("creator")
    real = await token_of(client, creator.username)
    sid = security.decode_token(real)[2]
    promoted, _ = create_token(creator.id, "operator", sid)  # signed with the secret, the role is not the account's
    problem(await client.get("/v1/admin/clock", headers=bearer(promoted)), 401, "unauthenticated")
    someone_elses, _ = create_token((await factory.user("creator")).id, "creator", sid)  # another account, this session
    problem(await client.get("/v1/accounts/me", headers=bearer(someone_elses)), 401, "unauthenticated")


async def test_a_session_ended_elsewhere_is_refused_within_one_second(client, db, factory: Factory):
    """Another replica ends the session (a direct write, not through this process): this one may
    trust its last read for at most `LC_SESSION_CHECK_SECONDS` (≤ 1 s), then refuses the token."""
    from app.core.clock import real_now
    from app.db.repositories import auth

    assert get_settings().session_check_seconds <= 1.0
    creator = await factory.user("creator")
    token = await token_of(client, creator.username)
    assert (await client.get("/v1/accounts/me", headers=bearer(token))).status_code == 200
    async with db() as session:
        assert await auth.end_session(session, security.decode_token(token)[2], real_now(), "logout")
        await session.commit()
    await asyncio.sleep(get_settings().session_check_seconds)
    problem(await client.get("/v1/accounts/me", headers=bearer(token)), 401, "unauthenticated")


# -- equal work for an unknown username --------------------------------------------------------
async def test_an_unknown_username_verifies_a_hash_like_a_wrong_password(client, factory: Factory, monkeypatch):
    creator = await factory.user("creator")
    calls: list[str] = []
    original = security._verify

    def counting(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return original(password_hash, password)

    monkeypatch.setattr(security, "_verify", counting)
    problem(await login(client, creator.username, "wrong-password-1"), 401, "invalid_credentials")
    problem(await login(client, "nobody-at-all", "wrong-password-1"), 401, "invalid_credentials")
    assert len(calls) == 2 and all(h.startswith("$argon2") for h in calls)
    assert calls[0] != calls[1]  # the account's hash, then the dummy one


# -- failed-login limits -----------------------------------------------------------------------
async def test_ten_failures_of_a_username_lock_it_with_retry_after_until_the_window_passes(client, factory: Factory):
    creator = await factory.user("creator")
    for _ in range(10):
        problem(await login(client, creator.username, "wrong-password-1", address="203.0.113.7"), 401, "invalid_credentials")
    r = await login(client, creator.username, address="203.0.113.7")  # even the right password
    body = problem(r, 429, "rate_limited")
    assert 0 < int(r.headers["Retry-After"]) <= 900 and body["retry_after"] == int(r.headers["Retry-After"])
    problem(await login(client, creator.username, address="198.51.100.9"), 429, "rate_limited")  # from anywhere
    other = await factory.user("creator")
    assert (await login(client, other.username, address="203.0.113.7")).status_code == 200  # other usernames go on
    await factory.advance(901)  # the window passes (business time)
    assert (await login(client, creator.username, address="203.0.113.7")).status_code == 200


async def test_a_success_clears_only_its_own_addresses_failures(client, factory: Factory):
    creator = await factory.user("creator")
    for _ in range(4):
        await login(client, creator.username, "wrong-password-1", address="203.0.113.1")
    for _ in range(5):
        await login(client, creator.username, "wrong-password-1", address="203.0.113.2")
    assert (await login(client, creator.username, address="203.0.113.1")).status_code == 200  # clears .1's four
    for _ in range(5):
        problem(await login(client, creator.username, "wrong-password-1", address="203.0.113.3"), 401, "invalid_credentials")
    problem(await login(client, creator.username, address="203.0.113.1"), 429, "rate_limited")  # .2's five count still


async def test_a_hundred_failures_from_one_address_lock_the_address(client, factory: Factory):
    creator = await factory.user("creator")
    for i in range(100):
        r = await login(client, f"guess{i}", "wrong-password-1", address="192.0.2.50")
        problem(r, 401, "invalid_credentials")
    r = await login(client, creator.username, address="192.0.2.50")
    problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
    assert (await login(client, creator.username, address="192.0.2.51")).status_code == 200


async def test_the_limits_are_counted_in_the_database_for_every_replica(client, db, factory: Factory):
    """Failures recorded by another replica (rows it wrote) count here."""
    from app.db.repositories import auth

    creator = await factory.user("creator")
    now = await factory.now()
    async with db() as session:
        for _ in range(10):
            await auth.add_failure(session, new_id("lgf"), creator.username, "198.51.100.77", now)
        await session.commit()
    problem(await login(client, creator.username, address="203.0.113.200"), 429, "rate_limited")


# -- hashing off the event loop ----------------------------------------------------------------
async def test_healthz_p99_stays_under_50ms_while_100_wrong_logins_run_20_at_a_time(
    committed_client, committed_factory, monkeypatch
):
    """With a production-like argon2 cost (OWASP's minimum: 19 MiB, 2 passes; tens of ms a hash)
    the logins hash in the hashing threads, and the event loop keeps answering `/healthz`. On
    the event loop, 20 such hashes in a row would hold every other request for most of a second."""
    from argon2 import PasswordHasher

    costly = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    monkeypatch.setattr(security, "_hasher", lambda: costly)
    creator = await committed_factory.user("creator")
    usernames = [creator.username, "nobody-at-all"]  # a known and an unknown username, 50 each
    gate = asyncio.Semaphore(20)
    loop = asyncio.get_running_loop()

    async def wrong_login(i: int) -> int:
        async with gate:
            address = f"198.51.100.{i % 50}"  # under every limit: the hashing itself is measured
            r = await login(committed_client, f"{usernames[i % 2]}", "wrong-password-1", address=address)
            return r.status_code

    async def health_probe(stop: asyncio.Event, latencies: list[float]) -> None:
        while not stop.is_set():
            start = loop.time()
            r = await committed_client.get("/healthz")
            latencies.append(loop.time() - start)
            assert r.status_code == 200
            await asyncio.sleep(0.005)

    monkeypatch.setattr(get_settings(), "login_failures_per_username", 1000)
    latencies: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(stop, latencies))
    started = loop.time()
    statuses = await asyncio.gather(*(wrong_login(i) for i in range(100)))
    took = loop.time() - started
    stop.set()
    await probe
    assert statuses == [401] * 100
    assert took > 0.3, f"the logins took {took:.2f}s: the hash was not costly enough to measure anything"
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(latencies) >= 20, latencies
    assert p99 < 0.050, f"/healthz p99 {p99 * 1000:.1f} ms over {len(latencies)} probes (max {latencies[-1] * 1000:.1f} ms)"


async def test_a_session_read_live_is_trusted_for_at_most_the_check_interval(client, engine, db, factory: Factory):
    """What the liveness check costs: nothing for a session read (or started) less than
    `LC_SESSION_CHECK_SECONDS` ago, then one primary-key read of `auth_sessions`."""
    from tests.conftest import IS_POSTGRES
    from tests.test_statement_budget import Statements, _raw

    connections = [await _raw(db)] if IS_POSTGRES else []
    creator = await factory.user("creator")
    token = await token_of(client, creator.username)
    with Statements(engine, *connections) as fresh:
        assert (await client.get("/v1/clock", headers=bearer(token))).status_code == 200
    assert not [sql for sql in fresh if "auth_sessions" in sql], fresh
    await asyncio.sleep(get_settings().session_check_seconds)
    with Statements(engine, *connections) as stale:
        assert (await client.get("/v1/clock", headers=bearer(token))).status_code == 200
    assert len([sql for sql in stale if "auth_sessions" in sql]) == 1, stale


async def test_wrong_current_passwords_count_as_failed_logins(client, factory: Factory):
    creator = await factory.user("creator")
    token = await token_of(client, creator.username)
    body = {"current_password": "wrong-password-1", "new_password": "violet-kettle-42"}
    for _ in range(10):
        problem(await client.post("/v1/accounts/me/password", headers=bearer(token), json=body), 403, "wrong_password")
    r = await client.post("/v1/accounts/me/password", headers=bearer(token), json={**body, "current_password": PASSWORD})
    problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
    problem(await login(client, creator.username), 429, "rate_limited")
