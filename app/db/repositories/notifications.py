"""Statements of the in-app inbox (站内信) and of the SMS outbox: an account's messages, marking
one read, the operator's SMS log, and the SMS relay's claims and outcomes.

The rows themselves are written by the change they announce (`app.domain.notifications.
message_rows`, in the change's own statement)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.platform import Notification, SmsMessage, SmsStatus
from app.db.models.webhooks import SmsDispatch
from app.db.pagination import key_after, page_of
from app.db.repositories._lists import in_list, per_dialect
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.session import dialect_of

notifications = table_of(Notification)
sms_messages = table_of(SmsMessage)
sms_dispatch = table_of(SmsDispatch)


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: str
    account_id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any] | None
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class SmsRecord:
    """An SMS with its relay's last error (None with the recorder adapter)."""

    id: str
    account_id: str | None
    phone: str
    text: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


# --------------------------------------------------------------------------- the inbox
_MARK_READ = (
    update(notifications)
    .where(notifications.c.id == bindparam("b_id"), notifications.c.account_id == bindparam("b_account"))
    .values(read_at=func.coalesce(notifications.c.read_at, bindparam("b_now", type_=notifications.c.read_at.type)))
    .returning(*notifications.c)
)


def _inbox_page(*, read: bool | None, after: bool) -> Select:
    query = select(notifications).where(notifications.c.account_id == bindparam("account_id"))
    if read is not None:
        query = query.where(notifications.c.read_at.is_not(None) if read else notifications.c.read_at.is_(None))
    if after:
        query = query.where(notifications.c.id < bindparam("after"))
    return query.order_by(notifications.c.id.desc()).limit(bindparam("limit", type_=Integer))


# one statement per (every, only read or only unread message; first page or a later one)
_INBOX_PAGES = {(read, after): _inbox_page(read=read, after=after) for read in (None, True, False) for after in (False, True)}


async def notifications_page(
    session: AsyncSession, account_id: str, *, unread: bool | None, limit: int, cursor: str | None
) -> Page[NotificationRecord]:
    """An account's own messages (nobody sees another's), newest first; `unread`: only unread
    (True) or read (False) ones."""
    after = key_after(cursor, notifications.c.id)
    read = None if unread is None else not unread
    params = {"account_id": account_id, "after": after, "limit": limit + 1}
    rows = await run(session, _INBOX_PAGES[read, after is not None], params)
    return Page(*page_of([record_of(NotificationRecord, row) for row in rows], limit))


async def mark_read(session: AsyncSession, account_id: str, notification_id: str, now: datetime) -> NotificationRecord | None:
    """Mark the account's message read at `now`, unless it was read before (the first `read_at`
    stays); None when the account has no such message."""
    row = (await run(session, _MARK_READ, {"b_id": notification_id, "b_account": account_id, "b_now": now})).first()
    return None if row is None else record_of(NotificationRecord, row)


# --------------------------------------------------------------------------- the SMS log
async def sms_page(session: AsyncSession, *, phone: str | None, limit: int, cursor: str | None) -> Page[SmsRecord]:
    """Every SMS (an operator's log), newest first, with the relay's last error."""
    query = select(sms_messages, sms_dispatch.c.last_error).outerjoin(sms_dispatch, sms_dispatch.c.sms_id == sms_messages.c.id)
    if phone:
        query = query.where(sms_messages.c.phone == phone)
    return await keyset(session, query, sms_messages.c.id, SmsRecord, limit=limit, cursor=cursor)


# --------------------------------------------------------------------------- the SMS relay
@dataclass(frozen=True, slots=True)
class QueuedSms:
    """A queued SMS with its relay state (`dispatched`: it has an `sms_dispatch` row)."""

    id: str
    phone: str
    text: str
    attempts: int
    dispatched: bool
    next_attempt_at: datetime | None
    claim_token: str | None
    last_status_code: int | None
    last_error: str | None


_DUE_SMS = (
    select(
        sms_messages.c.id,
        sms_messages.c.phone,
        sms_messages.c.text,
        sms_messages.c.attempts,
        sms_dispatch.c.sms_id.is_not(None).label("dispatched"),
        sms_dispatch.c.next_attempt_at,
        sms_dispatch.c.claim_token,
        sms_dispatch.c.last_status_code,
        sms_dispatch.c.last_error,
    )
    .outerjoin(sms_dispatch, sms_dispatch.c.sms_id == sms_messages.c.id)
    .where(
        sms_messages.c.status == SmsStatus.queued,
        or_(sms_dispatch.c.next_attempt_at.is_(None), sms_dispatch.c.next_attempt_at <= bindparam("now")),
    )
    .order_by(sms_messages.c.id)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=sms_messages, skip_locked=True)
)
_LOCK_CLAIMED = per_dialect(
    lambda d: (
        select(
            sms_messages.c.id,
            sms_messages.c.status,
            sms_messages.c.attempts,
            sms_dispatch.c.next_attempt_at,
            sms_dispatch.c.claim_token,
        )
        .join(sms_dispatch, sms_dispatch.c.sms_id == sms_messages.c.id)
        .where(in_list(sms_messages.c.id, "ids", d))
        .order_by(sms_messages.c.id)
        .with_for_update()
    )
)
_SET_SMS = (
    update(sms_messages)
    .where(sms_messages.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        sent_at=bindparam("b_sent_at", type_=sms_messages.c.sent_at.type),
    )
)
_DISPATCH_COLUMNS = ("next_attempt_at", "claim_token", "last_status_code", "last_error")


def _set_dispatch(dialect_insert):
    statement = dialect_insert(sms_dispatch).values(
        {c: bindparam(f"v_{c}", type_=sms_dispatch.c[c].type) for c in ("sms_id", *_DISPATCH_COLUMNS)}
    )
    return statement.on_conflict_do_update(index_elements=["sms_id"], set_={c: statement.excluded[c] for c in _DISPATCH_COLUMNS})


_SET_DISPATCH = {"postgresql": _set_dispatch(pg_insert), "sqlite": _set_dispatch(sqlite_insert)}


async def claim_queued_sms(session: AsyncSession, now: datetime, limit: int) -> list[QueuedSms]:
    """Queued SMS whose next attempt is due, oldest first, locked; on PostgreSQL those another
    relay holds are skipped (`FOR UPDATE SKIP LOCKED`)."""
    rows = await run(session, _DUE_SMS, {"now": now, "limit": limit})
    return [record_of(QueuedSms, row) for row in rows]


_DISPATCH_NOW = per_dialect(
    lambda d: select(sms_dispatch.c.sms_id, sms_dispatch.c.next_attempt_at, sms_dispatch.c.claim_token).where(
        in_list(sms_dispatch.c.sms_id, "ids", d)
    )
)


async def dispatch_now(session: AsyncSession, sms_ids: list[str]) -> dict[str, tuple[datetime, str | None]]:
    """The relay state of these messages as committed now (next attempt, claim token), read by a
    statement of its own: under READ COMMITTED it sees what another relay committed after the
    claiming statement's snapshot was taken."""
    if not sms_ids:
        return {}
    rows = await run(session, _DISPATCH_NOW[dialect_of(session).name], {"ids": sms_ids})
    return {row.sms_id: (row.next_attempt_at, row.claim_token) for row in rows}


@dataclass(frozen=True, slots=True)
class ClaimedSms:
    id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    claim_token: str | None


async def lock_claimed_sms(session: AsyncSession, sms_ids: list[str]) -> dict[str, ClaimedSms]:
    """The messages and their relay state, locked in id order (to record outcomes)."""
    if not sms_ids:
        return {}
    rows = await run(session, _LOCK_CLAIMED[dialect_of(session).name], {"ids": sorted(sms_ids)})
    return {row.id: record_of(ClaimedSms, row) for row in rows}


async def set_sms(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: id, status, attempts, sent_at — of messages this transaction holds locked."""
    if rows:
        await run(session, _SET_SMS, [{f"b_{k}": v for k, v in row.items()} for row in rows])


async def set_dispatch(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: sms_id and every relay column; a message's first one is created."""
    if rows:
        await run(session, _SET_DISPATCH[dialect_of(session).name], [{f"v_{k}": v for k, v in row.items()} for row in rows])


prepare_module(globals())
