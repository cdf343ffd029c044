"""Sessions and logins (security.md): every token belongs to a session the service can end
(logout, a password change, a suspension), and logins resist guessing (hashing off the event
loop, the same cost for an unknown username, failed-login limits shared by every replica)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import real_now
from app.core.config import get_settings
from app.core.errors import DomainError, Forbidden, NotFound, TooManyRequests, Unauthenticated
from app.core.passwords import MAX_LENGTH, check_password
from app.core.security import create_token, decode_token, hash_password, verify_password
from app.db.base import id_for
from app.db.models.accounts import AuthSession, LoginFailure
from app.db.redis import RedisFailures
from app.db.repositories import accounts as accounts_repo
from app.db.repositories import auth as repo
from app.domain.accounts.service import AccountOut, TokenOut, account_out
from app.domain.schemas import Strict
from app.state import clock
from app.state.core import Actor


class AccountSuspended(DomainError):
    status, code = 401, "account_suspended"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class InvalidCredentials(Unauthenticated):
    """A failed login: the failure it recorded is committed with the 401 (`TxRoute` commits the
    writes of an error that `keeps_writes`), so it counts towards the limits."""

    code = "invalid_credentials"
    keeps_writes = True


class WrongPassword(DomainError):
    """Counted as a failed login of the account (committed with the 403)."""

    status, code = 403, "wrong_password"
    keeps_writes = True


class PasswordChange(Strict):
    current_password: str = Field(min_length=1, max_length=MAX_LENGTH)
    new_password: str = Field(min_length=1, max_length=MAX_LENGTH)


class Suspension(Strict):
    reason: str = Field(min_length=1, max_length=500)


# -- liveness: one primary-key read, or a read of at most `session_check_seconds` ago ---------
# session id -> (monotonic time it was last read live, its account, the account's role)
_CONFIRMED: dict[str, tuple[float, str, str]] = {}
_CONFIRMED_MAX = 100_000
_KEEP_ENDED = timedelta(days=30)  # expired sessions are kept this long (who was logged in when)


def _confirm(session_id: str, account_id: str, role: str, read_at: float) -> None:
    if len(_CONFIRMED) >= _CONFIRMED_MAX:
        _CONFIRMED.clear()  # a rare full re-read beats an LRU's bookkeeping on every request
    _CONFIRMED[session_id] = (read_at, account_id, role)


def _forget(session_ids: list[str]) -> None:
    for session_id in session_ids:
        _CONFIRMED.pop(session_id, None)


async def actor_of(session: AsyncSession, token: str) -> tuple[Actor, str]:
    """The caller of a valid token whose session is live, with the session's id; 401 otherwise
    (ended, expired, its account suspended or gone, or the token's role not the account's).
    A session read live less than `LC_SESSION_CHECK_SECONDS` (≤ 1 s) ago is not read again, so a
    client's burst of requests costs one read a second, and an ended session is refused on
    every replica within that second (at once on the replica that ended it)."""
    account_id, role, session_id = decode_token(token)
    await ensure_live(session, session_id, account_id, role)
    return Actor(account_id, role), session_id


async def ensure_live(session: AsyncSession, session_id: str, account_id: str, role: str) -> None:
    """401 unless the login session is live and is `account_id`'s in `role` (the same check
    for a bearer token and for what a session handed out, such as a stream ticket)."""
    seen = _CONFIRMED.get(session_id)
    started = time.monotonic()
    if seen is None or started - seen[0] >= get_settings().session_check_seconds:
        live = await repo.live_session(session, session_id, real_now())
        if live is None:
            _CONFIRMED.pop(session_id, None)
            raise Unauthenticated("this session has ended: log in again")
        _confirm(session_id, live.account_id, live.role, started)  # trusted from before the read
        seen = _CONFIRMED[session_id]
    if seen[1] != account_id or seen[2] != role:  # signed, but not this session's account and role
        raise Unauthenticated("the access token is not valid")


async def link_actor(session: AsyncSession, account_id: str, role: str) -> Actor:
    """The caller of a signed link (app/core/links.py verified its signature and expiry): 403
    when its account is suspended, gone, or no longer of that role, so a suspension stops the
    pictures and downloads already handed out too."""
    credentials = await accounts_repo.credentials_by_id(session, account_id)
    if credentials is None or credentials.role != role:
        raise Forbidden("the account this link was made for no longer exists with that role")
    if credentials.suspended_at is not None:
        raise Forbidden("the account this link was made for is suspended")
    return Actor(account_id, role)


async def start_session(session: AsyncSession, account_id: str, role: str) -> TokenOut:
    """A new session of the account, and its token."""
    started, now = time.monotonic(), real_now()  # real time, as the token's expiry
    session_id = id_for(AuthSession)
    ttl = get_settings().token_ttl_seconds
    await repo.add_session(session, session_id, account_id, now, now + timedelta(seconds=ttl))
    token, ttl = create_token(account_id, role, session_id)
    _confirm(session_id, account_id, role, started)  # just written: its first requests need no read
    return TokenOut(access_token=token, expires_in=ttl)


# -- logins -----------------------------------------------------------------------------------
def _retry_after(oldest: datetime | None, now: datetime, window: timedelta) -> int:
    if oldest is None:
        return int(window.total_seconds())
    return max(1, int((oldest + window - now).total_seconds()) + 1)


async def login(session: AsyncSession, username: str, password: str, client_ip: str) -> TokenOut:
    """The OAuth2 password grant. After `LC_LOGIN_FAILURES_PER_USERNAME` failures of a username
    (or `…_PER_CLIENT` from one address) within the window, 429 `rate_limited` with
    `Retry-After` until the oldest of them leaves it. A success clears this address's failures of
    the username, not another address's."""
    now = await clock.now(session)
    username = username[:64]
    client_ip = client_ip[:64]
    counts = await _within_limits(session, username, client_ip, now)
    credentials = await accounts_repo.credentials_by_username(session, username)
    # Nothing is written yet: end the reading transaction, so no lock (SQLite's write lock is
    # taken at BEGIN) and no transaction stays open for the tens of milliseconds of the hash.
    await session.rollback()
    # an unknown username verifies a dummy hash: it costs the time a wrong password does
    matches = await verify_password(credentials.password_hash if credentials else None, password)
    if not matches or credentials is None:
        await _failed(session, username, client_ip, now, counts)
        raise InvalidCredentials("wrong username or password")
    if credentials.suspended_at is not None:
        raise AccountSuspended("this account is suspended")
    if counts.by_username:
        await _forget_failures(session, username, client_ip)
    await repo.purge_sessions(session, real_now() - _KEEP_ENDED)  # an index probe, rarely a row
    return await start_session(session, credentials.id, credentials.role)


async def _within_limits(session: AsyncSession, username: str, client_ip: str, now: datetime) -> repo.FailureCounts:
    """The failures counted against this attempt; 429 when either limit is reached."""
    settings = get_settings()
    window = timedelta(seconds=settings.login_failure_window_seconds)
    redis = _redis_failures()
    if redis is not None:
        counts = await redis.counts(username, client_ip, now - window)
    else:
        counts = await repo.failure_counts(session, username, client_ip, now - window)
    if counts.by_username >= settings.login_failures_per_username:
        raise TooManyRequests(
            "too many failed logins of this username: try again later",
            retry_after=_retry_after(counts.oldest_of_username, now, window),
        )
    if counts.by_client >= settings.login_failures_per_client:
        raise TooManyRequests(
            "too many failed logins from this address: try again later",
            retry_after=_retry_after(counts.oldest_of_client, now, window),
        )
    return counts


async def _failed(session: AsyncSession, username: str, client_ip: str, now: datetime, counts: repo.FailureCounts) -> None:
    window = timedelta(seconds=get_settings().login_failure_window_seconds)
    redis = _redis_failures()
    if redis is not None:
        await redis.add(id_for(LoginFailure), username, client_ip, now, now - window)
        return
    await repo.add_failure(session, id_for(LoginFailure), username, client_ip, now)
    if counts.by_username == 0:  # now and then, the failures that left the window go
        await repo.purge_failures(session, now - window)


async def _forget_failures(session: AsyncSession, username: str, client_ip: str) -> None:
    redis = _redis_failures()
    if redis is not None:
        await redis.forget(username, client_ip)
    else:
        await repo.forget_failures(session, username, client_ip)


def _redis_failures() -> RedisFailures | None:
    """The Redis store of the failed-login counts with `LC_REDIS_URL` set (app/db/redis.py)."""
    settings = get_settings()
    if not settings.redis_url:
        return None
    return RedisFailures(settings.redis_url, settings.redis_key_prefix, settings.login_failure_window_seconds)


async def logout(session: AsyncSession, session_id: str) -> None:
    await repo.end_session(session, session_id, real_now(), "logout")
    _forget([session_id])


async def change_password(session: AsyncSession, actor: Actor, session_id: str, body: PasswordChange, client_ip: str) -> None:
    """With the current password (403 `wrong_password` otherwise, counted as a failed login, so
    a stolen token cannot guess it faster than a login could): the new one (422
    `weak_password` if it is short or common), and every other session of the account ends."""
    credentials = await accounts_repo.credentials_by_id(session, actor.id)
    if credentials is None:
        raise Unauthenticated("this session has ended: log in again")
    now = await clock.now(session)
    counts = await _within_limits(session, credentials.username, client_ip[:64], now)
    if not await verify_password(credentials.password_hash, body.current_password):
        await _failed(session, credentials.username, client_ip[:64], now, counts)
        raise WrongPassword("the current password is wrong")
    check_password(body.new_password, loc=["body", "new_password"])
    await accounts_repo.update_account(session, actor.id, {"password_hash": await hash_password(body.new_password)})
    _forget(await repo.end_sessions_of(session, actor.id, real_now(), "password_changed", keep=session_id))


async def suspend(session: AsyncSession, actor: Actor, account_id: str, body: Suspension) -> AccountOut:
    """An operator suspends an account: it cannot log in, and all its sessions end at once."""
    if account_id == actor.id:
        raise Forbidden("an operator cannot suspend their own account")
    if not await repo.set_suspension(session, account_id, await clock.now(session), body.reason):
        raise NotFound("no such account")
    _forget(await repo.end_sessions_of(session, account_id, real_now(), "suspended"))
    return await _view(session, actor, account_id)


async def reinstate(session: AsyncSession, actor: Actor, account_id: str) -> AccountOut:
    """Lift a suspension: the account may log in again (its ended sessions stay ended)."""
    if not await repo.set_suspension(session, account_id, None, None):
        raise NotFound("no such account")
    return await _view(session, actor, account_id)


async def _view(session: AsyncSession, actor: Actor, account_id: str) -> AccountOut:
    account = await accounts_repo.account_by_id(session, account_id)
    if account is None:
        raise NotFound("no such account")
    return account_out(account, actor)


__all__ = [
    "AccountSuspended",
    "PasswordChange",
    "Suspension",
    "WrongPassword",
    "actor_of",
    "change_password",
    "login",
    "logout",
    "reinstate",
    "start_session",
    "suspend",
]
