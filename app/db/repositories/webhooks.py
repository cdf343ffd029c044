"""Statements of the webhooks: subscriptions (an account sees its own only), their deliveries and
attempts, and the relay's fan-out cursor, claims and outcomes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.platform import Event, EventRecipient
from app.db.models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookFanoutCursor, WebhookSubscription
from app.db.repositories._lists import in_list, per_dialect
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.session import dialect_of

subscriptions = table_of(WebhookSubscription)
deliveries = table_of(WebhookDelivery)
attempts = table_of(WebhookAttempt)
fanout_cursor = table_of(WebhookFanoutCursor)
events = table_of(Event)
event_recipients = table_of(EventRecipient)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    id: str
    account_id: str
    owner_role: str
    url: str
    event_types: list[str]
    secret: str
    active: bool
    since_event_id: str
    created_at: datetime
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    claim_token: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: str
    delivery_id: str
    number: int
    started_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


def _columns(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


def _insert(table: Any, record: type):
    return insert(table).values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in _columns(record)})


def _values(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{f"v_{k}": v for k, v in row.items()} for row in rows]


# --------------------------------------------------------------------------- subscriptions
_INSERT_SUBSCRIPTION = _insert(subscriptions, SubscriptionRecord).returning(*subscriptions.c)
_OWNS = select(subscriptions.c.id).where(
    subscriptions.c.id == bindparam("id"), subscriptions.c.account_id == bindparam("account_id")
)
_ACTIVE = select(subscriptions).where(subscriptions.c.active.is_(True)).order_by(subscriptions.c.id)


async def insert_subscription(session: AsyncSession, values: dict[str, Any]) -> SubscriptionRecord:
    """A new subscription of `values` (every column, the id included)."""
    return record_of(SubscriptionRecord, (await run(session, _INSERT_SUBSCRIPTION, _values([values])[0])).one())


async def subscriptions_page(
    session: AsyncSession, account_id: str, *, limit: int, cursor: str | None
) -> Page[SubscriptionRecord]:
    """The account's own subscriptions, newest first."""
    query = select(subscriptions).where(subscriptions.c.account_id == account_id)
    return await keyset(session, query, subscriptions.c.id, SubscriptionRecord, limit=limit, cursor=cursor)


async def owns_subscription(session: AsyncSession, account_id: str, subscription_id: str) -> bool:
    return (await run(session, _OWNS, {"id": subscription_id, "account_id": account_id})).first() is not None


async def active_subscriptions(session: AsyncSession) -> list[SubscriptionRecord]:
    return [record_of(SubscriptionRecord, row) for row in await run(session, _ACTIVE)]


_OWN = (subscriptions.c.id == bindparam("w_id"), subscriptions.c.account_id == bindparam("w_account_id"))
_DELETE_SUBSCRIPTION = delete(subscriptions).where(*_OWN).returning(subscriptions.c.id)
_ROTATE_SECRET = (
    update(subscriptions)
    .where(*_OWN)
    .values(
        previous_secret=subscriptions.c.secret,
        previous_secret_expires_at=bindparam("b_expires_at", type_=subscriptions.c.previous_secret_expires_at.type),
        secret=bindparam("b_secret"),
    )
    .returning(*subscriptions.c)
)
_UPDATABLE = frozenset({"url", "event_types", "active", "disabled_reason", "failing_since"})


async def update_subscription(
    session: AsyncSession, account_id: str, subscription_id: str, values: dict[str, Any]
) -> SubscriptionRecord | None:
    """Set `values` (url, event_types, active, disabled_reason, failing_since) on the account's
    own subscription, in one statement; None when it has no such subscription."""
    assert set(values) <= _UPDATABLE, values
    params = {"w_id": subscription_id, "w_account_id": account_id}
    if not values:
        row = (await run(session, select(subscriptions).where(*_OWN), params)).first()
    else:
        statement = update(subscriptions).where(*_OWN).values(**values).returning(*subscriptions.c)
        row = (await run(session, statement, params)).first()
    return record_of(SubscriptionRecord, row) if row is not None else None


async def delete_subscription(session: AsyncSession, account_id: str, subscription_id: str) -> bool:
    """Delete the account's own subscription with its deliveries and attempts (cascade)."""
    return (await run(session, _DELETE_SUBSCRIPTION, {"w_id": subscription_id, "w_account_id": account_id})).first() is not None


async def rotate_secret(
    session: AsyncSession, account_id: str, subscription_id: str, secret: str, previous_expires_at: datetime
) -> SubscriptionRecord | None:
    """The new secret in place, the one it replaces kept as `previous_secret` until
    `previous_expires_at` (one statement: SET reads the row as it was)."""
    params = {"w_id": subscription_id, "w_account_id": account_id, "b_secret": secret, "b_expires_at": previous_expires_at}
    row = (await run(session, _ROTATE_SECRET, params)).first()
    return record_of(SubscriptionRecord, row) if row is not None else None


# The relay's bookkeeping of failing endpoints (in a transaction of its own, holding no delivery
# lock: subscriptions are locked after deliveries nowhere else).
_CLEAR_FAILING = per_dialect(
    lambda d: (
        update(subscriptions)
        .where(in_list(subscriptions.c.id, "ids", d), subscriptions.c.failing_since.is_not(None))
        .values(failing_since=None)
    )
)
_MARK_FAILING = per_dialect(
    lambda d: (
        update(subscriptions)
        .where(in_list(subscriptions.c.id, "ids", d), subscriptions.c.failing_since.is_(None))
        .values(failing_since=bindparam("b_now", type_=subscriptions.c.failing_since.type))
    )
)
_DISABLE_FAILING = per_dialect(
    lambda d: (
        update(subscriptions)
        .where(
            in_list(subscriptions.c.id, "ids", d),
            subscriptions.c.active.is_(True),
            subscriptions.c.failing_since <= bindparam("b_cutoff", type_=subscriptions.c.failing_since.type),
        )
        .values(active=False, disabled_reason="failing")
        .returning(*subscriptions.c)
    )
)


async def note_outcomes(
    session: AsyncSession, succeeded: list[str], failed: list[str], now: datetime, cutoff: datetime
) -> list[SubscriptionRecord]:
    """A success ends a subscription's failing streak; a failure starts one (at `now`) unless
    one runs. Those failing since `cutoff` or earlier are disabled: they are returned."""
    name = dialect_of(session).name
    if succeeded:
        await run(session, _CLEAR_FAILING[name], {"ids": sorted(succeeded)})
    if not failed:
        return []
    ids = sorted(failed)
    await run(session, _MARK_FAILING[name], {"ids": ids, "b_now": now})
    return [
        record_of(SubscriptionRecord, row) for row in await run(session, _DISABLE_FAILING[name], {"ids": ids, "b_cutoff": cutoff})
    ]


# --------------------------------------------------------------------------- deliveries and attempts
_ATTEMPTS_OF = per_dialect(
    lambda d: select(attempts).where(in_list(attempts.c.delivery_id, "ids", d)).order_by(attempts.c.number, attempts.c.id)
)


async def deliveries_page(
    session: AsyncSession, subscription_id: str, *, status: str | None, limit: int, cursor: str | None
) -> Page[DeliveryRecord]:
    """One subscription's deliveries (the caller owns it: `owns_subscription`), newest first."""
    query = select(deliveries).where(deliveries.c.subscription_id == subscription_id)
    if status:
        query = query.where(deliveries.c.status == status)
    return await keyset(session, query, deliveries.c.id, DeliveryRecord, limit=limit, cursor=cursor)


async def attempts_of(session: AsyncSession, delivery_ids: list[str]) -> dict[str, list[AttemptRecord]]:
    """Each delivery's attempts, in order."""
    log: dict[str, list[AttemptRecord]] = defaultdict(list)
    if delivery_ids:
        for row in await run(session, _ATTEMPTS_OF[dialect_of(session).name], {"ids": delivery_ids}):
            log[row.delivery_id].append(record_of(AttemptRecord, row))
    return log


# --------------------------------------------------------------------------- fan-out
_LOCK_CURSOR = select(fanout_cursor.c.last_event_id).where(fanout_cursor.c.id == 1).with_for_update(skip_locked=True)
_CURSOR_COUNT = select(func.count()).select_from(fanout_cursor)
_MOVE_CURSOR = update(fanout_cursor).where(fanout_cursor.c.id == 1).values(last_event_id=bindparam("b_last"))


def _create_cursor(dialect_insert):
    return (
        dialect_insert(fanout_cursor)
        .values(id=1, last_event_id="")
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(fanout_cursor.c.id)
    )


_CREATE_CURSOR = {"postgresql": _create_cursor(pg_insert), "sqlite": _create_cursor(sqlite_insert)}
_RECIPIENTS_OF = per_dialect(
    lambda d: select(event_recipients.c.event_id, event_recipients.c.account_id).where(
        in_list(event_recipients.c.event_id, "ids", d)
    )
)
_DELIVERED = per_dialect(
    lambda d: select(deliveries.c.subscription_id, deliveries.c.event_id).where(in_list(deliveries.c.event_id, "ids", d))
)
_INSERT_DELIVERY = _insert(deliveries, DeliveryRecord)


async def lock_fanout_cursor(session: AsyncSession) -> str | None:
    """The fan-out cursor, locked; None when there is none yet or another relay holds it
    (`SKIP LOCKED`)."""
    return (await run(session, _LOCK_CURSOR)).scalar()


async def has_fanout_cursor(session: AsyncSession) -> bool:
    return bool((await run(session, _CURSOR_COUNT)).scalar())


async def create_fanout_cursor(session: AsyncSession) -> bool:
    """The cursor's one row, at the start; False when another relay created it first (this one
    then waited for that transaction to end)."""
    return (await run(session, _CREATE_CURSOR[dialect_of(session).name])).first() is not None


async def move_fanout_cursor(session: AsyncSession, last_event_id: str) -> None:
    await run(session, _MOVE_CURSOR, {"b_last": last_event_id})


async def recipients_of(session: AsyncSession, event_ids: list[str]) -> dict[str, set[str]]:
    """Whom each event concerns."""
    concerned: dict[str, set[str]] = defaultdict(set)
    for event_id, account_id in await run(session, _RECIPIENTS_OF[dialect_of(session).name], {"ids": event_ids}):
        concerned[event_id].add(account_id)
    return concerned


async def delivered_pairs(session: AsyncSession, event_ids: list[str]) -> set[tuple[str, str]]:
    """(subscription_id, event_id) of the deliveries these events already have."""
    return {(s, e) for s, e in await run(session, _DELIVERED[dialect_of(session).name], {"ids": event_ids})}


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New deliveries (every column)."""
    if rows:
        await run(session, _INSERT_DELIVERY, _values(rows))


# --------------------------------------------------------------------------- delivery
@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A due delivery with what its POST needs: the subscription's URL and secret, the event."""

    delivery: DeliveryRecord
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    failing_since: datetime | None
    occurred_at: datetime
    data: dict[str, Any]


# A disabled subscription's pending deliveries wait (they go out when it is enabled again).
_DUE = (
    select(
        deliveries,
        subscriptions.c.url,
        subscriptions.c.secret,
        subscriptions.c.previous_secret,
        subscriptions.c.previous_secret_expires_at,
        subscriptions.c.failing_since,
        events.c.occurred_at,
        events.c.data,
    )
    .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
    .join(events, events.c.id == deliveries.c.event_id)
    .where(
        deliveries.c.status == DeliveryStatus.pending,
        deliveries.c.next_attempt_at <= bindparam("now"),
        subscriptions.c.active.is_(True),
    )
    .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(of=deliveries, skip_locked=True)
)
_LOCK_DELIVERIES = per_dialect(
    lambda d: select(deliveries).where(in_list(deliveries.c.id, "ids", d)).order_by(deliveries.c.id).with_for_update()
)
_MUTABLE = ("status", "attempts", "next_attempt_at", "claim_token", "last_status_code", "last_error", "finished_at")
_SET_DELIVERY = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}", type_=deliveries.c[c].type) for c in _MUTABLE})
)
_INSERT_ATTEMPT = _insert(attempts, AttemptRecord)


async def claim_due_deliveries(session: AsyncSession, now: datetime, limit: int) -> list[DueDelivery]:
    """Pending deliveries due at `now`, oldest due first, locked; on PostgreSQL those another
    relay holds are skipped (`FOR UPDATE SKIP LOCKED`), so two relays never claim one."""
    rows = await run(session, _DUE, {"now": now, "limit": limit})
    return [
        DueDelivery(
            record_of(DeliveryRecord, row),
            row.url,
            row.secret,
            row.previous_secret,
            row.previous_secret_expires_at,
            row.failing_since,
            row.occurred_at,
            row.data,
        )
        for row in rows
    ]


async def lock_deliveries(session: AsyncSession, delivery_ids: list[str]) -> dict[str, DeliveryRecord]:
    """The deliveries, locked in id order."""
    if not delivery_ids:
        return {}
    rows = await run(session, _LOCK_DELIVERIES[dialect_of(session).name], {"ids": sorted(set(delivery_ids))})
    return {row.id: record_of(DeliveryRecord, row) for row in rows}


async def set_deliveries(session: AsyncSession, rows: list[DeliveryRecord]) -> None:
    """Write the relay's columns of deliveries this transaction holds locked."""
    if rows:
        await run(session, _SET_DELIVERY, [{"b_id": r.id, **{f"b_{c}": getattr(r, c) for c in _MUTABLE}} for r in rows])


async def insert_attempts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New attempts (every column)."""
    if rows:
        await run(session, _INSERT_ATTEMPT, _values(rows))


prepare_module(globals())
