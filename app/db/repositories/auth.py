"""Statements of sessions and logins: a session's liveness (one primary-key read joined to its
account), new and ended sessions, suspension, and the failed-login counts of the rate limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.accounts import Account, AuthSession, LoginFailure
from app.db.repositories._run import prepare_module, run

accounts = table_of(Account)
auth_sessions = table_of(AuthSession)
login_failures = table_of(LoginFailure)


@dataclass(frozen=True, slots=True)
class LiveSession:
    account_id: str
    role: str


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """Failed logins within the window: of the username and of the client address, with the
    oldest of each (when it leaves the window, the count drops)."""

    by_username: int
    oldest_of_username: datetime | None
    by_client: int
    oldest_of_client: datetime | None


_LIVE = (
    select(auth_sessions.c.account_id, accounts.c.role)
    .select_from(auth_sessions.join(accounts, accounts.c.id == auth_sessions.c.account_id))
    .where(
        auth_sessions.c.id == bindparam("sid"),
        auth_sessions.c.ended_at.is_(None),
        auth_sessions.c.expires_at > bindparam("now"),
        accounts.c.suspended_at.is_(None),
    )
)
_INSERT_SESSION = insert(auth_sessions)
_END_ONE = (
    update(auth_sessions)
    .where(auth_sessions.c.id == bindparam("sid"), auth_sessions.c.ended_at.is_(None))
    .values(ended_at=bindparam("e_now"), reason=bindparam("e_reason"))
    .returning(auth_sessions.c.id)
)
_END_OTHERS = (
    update(auth_sessions)
    .where(
        auth_sessions.c.account_id == bindparam("e_account_id"),
        auth_sessions.c.id != bindparam("keep"),
        auth_sessions.c.ended_at.is_(None),
        auth_sessions.c.expires_at > bindparam("e_now"),
    )
    .values(ended_at=bindparam("e_now"), reason=bindparam("e_reason"))
    .returning(auth_sessions.c.id)
)
_PURGE_SESSIONS = auth_sessions.delete().where(auth_sessions.c.expires_at < bindparam("before"))
_SUSPEND = (
    update(accounts)
    .where(accounts.c.id == bindparam("s_account_id"))
    .values(suspended_at=bindparam("s_at"), suspension_reason=bindparam("s_reason"))
    .returning(accounts.c.id)
)


def _window(column_name: str):
    column = login_failures.c[column_name]
    where = (column == bindparam(column_name), login_failures.c.failed_at > bindparam("since"))
    count = select(func.count()).where(*where).scalar_subquery()
    oldest = select(func.min(login_failures.c.failed_at)).where(*where).scalar_subquery()
    return count, oldest


_USER_COUNT, _USER_OLDEST = _window("username")
_CLIENT_COUNT, _CLIENT_OLDEST = _window("client_ip")
_FAILURES = select(
    _USER_COUNT.label("by_username"),
    _USER_OLDEST.label("oldest_of_username"),
    _CLIENT_COUNT.label("by_client"),
    _CLIENT_OLDEST.label("oldest_of_client"),
)
_INSERT_FAILURE = insert(login_failures)
_FORGET_FAILURES = login_failures.delete().where(
    login_failures.c.username == bindparam("username"), login_failures.c.client_ip == bindparam("client_ip")
)
_PURGE_FAILURES = login_failures.delete().where(login_failures.c.failed_at < bindparam("before"))


# ------------------------------------------------------------------------------------ sessions
async def live_session(session: AsyncSession, session_id: str, now: datetime) -> LiveSession | None:
    """The account and role of a session that is live now (not ended, not expired, its
    account not suspended); None otherwise."""
    row = (await run(session, _LIVE, {"sid": session_id, "now": now})).first()
    return None if row is None else LiveSession(row.account_id, row.role)


async def add_session(
    session: AsyncSession, session_id: str, account_id: str, created_at: datetime, expires_at: datetime
) -> None:
    await run(
        session,
        _INSERT_SESSION,
        {
            "id": session_id,
            "account_id": account_id,
            "created_at": created_at,
            "expires_at": expires_at,
            "ended_at": None,
            "reason": None,
        },
    )


async def end_session(session: AsyncSession, session_id: str, now: datetime, reason: str) -> bool:
    return (await run(session, _END_ONE, {"sid": session_id, "e_now": now, "e_reason": reason})).first() is not None


async def end_sessions_of(session: AsyncSession, account_id: str, now: datetime, reason: str, *, keep: str = "") -> list[str]:
    """End every live session of the account but `keep`; the ids ended."""
    params = {"e_account_id": account_id, "keep": keep, "e_now": now, "e_reason": reason}
    return list((await run(session, _END_OTHERS, params)).scalars())


async def purge_sessions(session: AsyncSession, before: datetime) -> None:
    await run(session, _PURGE_SESSIONS, {"before": before})


async def set_suspension(session: AsyncSession, account_id: str, at: datetime | None, reason: str | None) -> bool:
    """Suspend (`at` set) or reinstate (None) the account; False if there is no such account."""
    params = {"s_account_id": account_id, "s_at": at, "s_reason": reason}
    return (await run(session, _SUSPEND, params)).first() is not None


# ------------------------------------------------------------------------------ failed logins
async def failure_counts(session: AsyncSession, username: str, client_ip: str, since: datetime) -> FailureCounts:
    row = (await run(session, _FAILURES, {"username": username, "client_ip": client_ip, "since": since})).one()
    return FailureCounts(int(row.by_username), row.oldest_of_username, int(row.by_client), row.oldest_of_client)


async def add_failure(session: AsyncSession, failure_id: str, username: str, client_ip: str, at: datetime) -> None:
    await run(session, _INSERT_FAILURE, {"id": failure_id, "username": username, "client_ip": client_ip, "failed_at": at})


async def forget_failures(session: AsyncSession, username: str, client_ip: str) -> None:
    """A success clears this address's failures of the username (and no other address's)."""
    await run(session, _FORGET_FAILURES, {"username": username, "client_ip": client_ip})


async def purge_failures(session: AsyncSession, before: datetime) -> None:
    await run(session, _PURGE_FAILURES, {"before": before})


prepare_module(globals())
