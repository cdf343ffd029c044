"""Webhooks: subscriptions, fan-out from the event outbox, and the delivery relay.

Fan-out is done by the relay from the outbox (`events`), not at event-write time: the core's
transitions stay untouched and no event written by any path (ORM or Core insert) is missed.
The relay keeps a cursor (`webhook_fanout_cursor`) below which every event has been fanned
out. Ids are time-ordered but a transaction may commit after a later-id one, so the cursor
only moves up to `SETTLE` before now and (PostgreSQL) before the start of the oldest open
transaction, whose events may still commit with older ids; events above it are re-scanned each
run and de-duplicated by the unique (subscription, event) constraint.

Delivery: claim due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and set a lease
(`next_attempt_at = now + LEASE`) in one transaction; POST outside any transaction; record the
outcome in another. A worker killed mid-delivery leaves the lease, which expires: the delivery
is due again. All scheduling uses real wall-clock time, never the test clock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.core.errors import NotFound
from app.db.base import id_for, new_id
from app.db.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.db.models.webhooks import WebhookFanoutCursor as WebhookFanoutCursor  # the cursor's table, for tests
from app.db.repositories import webhooks as repo
from app.db.repositories.events import EventRecord
from app.db.repositories.webhooks import SubscriptionRecord
from app.domain.schemas import Out, Strict
from app.state.core import Actor

# Retry schedule: attempt n (1-based) failing waits BACKOFF_BASE * 2^(n-1), capped.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ATTEMPTS = 12
LEASE_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0
SETTLE_SECONDS = 30.0
# An open transaction holds the cursor back (its events may commit with ids drawn long ago),
# unless it has been open longer than this: a stuck session must not stop fan-out for good.
OPEN_TRANSACTION_WAIT_SECONDS = 600.0
CLAIM_BATCH = 50
FANOUT_BATCH = 500
FANOUT_MAX_BATCHES = 200

_TYPE = re.compile(r"^(\*|[a-z0-9_]+\.(\*|[a-z0-9_]+))$")
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


# -- shapes -------------------------------------------------------------------------------------
class WebhookCreate(Strict):
    url: str = Field(max_length=2000, description="http(s) URL that receives POSTs")
    event_types: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1, max_length=50, description="Event types (`task_order.accepted`), `<machine>.*` or `*`"
    )
    secret: str = Field(min_length=8, max_length=200, description="HMAC-SHA256 key of `LC-Signature`")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _TYPE.match(item):
                raise ValueError(f"'{item}' is not an event type (`machine.action`, `machine.*` or `*`)")
        return list(dict.fromkeys(value))


class WebhookOut(Out):
    id: str
    url: str
    event_types: list[str]
    active: bool
    created_at: datetime


class AttemptOut(Out):
    number: int
    started_at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class DeliveryOut(Out):
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    attempt_log: list[AttemptOut] = []


# -- subscriptions ------------------------------------------------------------------------------
async def create_subscription(session: AsyncSession, actor: Actor, body: WebhookCreate) -> WebhookOut:
    sub = await repo.insert_subscription(
        session,
        {
            "id": id_for(WebhookSubscription),
            "account_id": actor.id,
            "owner_role": actor.role,
            "url": body.url,
            "event_types": body.event_types,
            "secret": body.secret,
            "active": True,
            "since_event_id": new_id("evt"),
            "created_at": real_now(),
        },
    )
    return WebhookOut.model_validate(sub)


async def list_subscriptions(
    session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None
) -> tuple[list[WebhookOut], str | None]:
    page = await repo.subscriptions_page(session, actor.id, limit=limit, cursor=cursor)
    return [WebhookOut.model_validate(s) for s in page.items], page.next_cursor


async def list_deliveries(
    session: AsyncSession, actor: Actor, subscription_id: str, *, status: str | None, limit: int, cursor: str | None
) -> tuple[list[DeliveryOut], str | None]:
    if not await repo.owns_subscription(session, actor.id, subscription_id):
        raise NotFound(f"webhook {subscription_id} not found")
    page = await repo.deliveries_page(session, subscription_id, status=status, limit=limit, cursor=cursor)
    log = await repo.attempts_of(session, [r.id for r in page.items])
    items = [
        DeliveryOut.model_validate(r).model_copy(update={"attempt_log": [AttemptOut.model_validate(a) for a in log[r.id]]})
        for r in page.items
    ]
    return items, page.next_cursor


# -- fan-out ------------------------------------------------------------------------------------
def _id_floor(prefix: str, moment: datetime) -> str:
    """The smallest id `new_id(prefix)` could have produced at `moment`."""
    value = int(moment.timestamp() * 1000) << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def matches(event_types: list[str], event_type: str) -> bool:
    machine = event_type.rsplit(".", 1)[0]
    return "*" in event_types or event_type in event_types or f"{machine}.*" in event_types


def _delivery(sub: SubscriptionRecord, event_id: str, event_type: str, now: datetime) -> dict[str, Any]:
    return {
        "id": id_for(WebhookDelivery),
        "subscription_id": sub.id,
        "event_id": event_id,
        "event_type": event_type,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "claim_token": None,
        "last_status_code": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }


async def _fan_out_batch(
    session: AsyncSession, subs: list[SubscriptionRecord], events: list[tuple[str, str]], now: datetime
) -> int:
    ids = [event_id for event_id, _ in events]
    recipients = await repo.recipients_of(session, ids)
    existing = await repo.delivered_pairs(session, ids)
    rows = []
    for event_id, event_type in events:
        for sub in subs:
            if event_id <= sub.since_event_id or (sub.id, event_id) in existing:
                continue
            if sub.owner_role != "operator" and sub.account_id not in recipients[event_id]:
                continue
            if not matches(sub.event_types, event_type):
                continue
            rows.append(_delivery(sub, event_id, event_type, now))
    await repo.insert_deliveries(session, rows)
    return len(rows)


async def _oldest_open_transaction(session: AsyncSession, now: datetime) -> datetime | None:
    """Start of the oldest other transaction open on this database (PostgreSQL; None on
    SQLite, whose writers are serialised). A batch of timers fired in one transaction under lock
    contention can stay open for tens of seconds: its first events carry ids drawn at its start
    and become visible only at its commit."""
    oldest = await repo.oldest_open_transaction(session)
    if oldest is None or oldest < now - timedelta(seconds=OPEN_TRANSACTION_WAIT_SECONDS):
        return None
    return oldest


async def fan_out(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Create the deliveries of events not yet fanned out. One relay at a time does it (the
    cursor row is locked; another replica skips). Returns how many deliveries were created."""
    now = now or real_now()
    created = 0
    async with sessionmaker() as session:
        last = await repo.lock_fanout_cursor(session)
        if last is None:
            if await repo.has_fanout_cursor(session) or not await repo.create_fanout_cursor(session):
                return 0  # another relay holds it
            last = ""
        settled = now
        oldest = await _oldest_open_transaction(session, now)
        if oldest is not None:
            settled = min(settled, oldest)
        horizon = _id_floor("evt", settled - timedelta(seconds=SETTLE_SECONDS))
        subs = await repo.active_subscriptions(session)
        if not subs:
            # Nothing to deliver: every settled event is done (a later subscription only
            # receives events written after it).
            if horizon > last:
                await repo.move_fanout_cursor(session, horizon)
            await session.commit()
            return 0
        after = new_cursor = last
        for _ in range(FANOUT_MAX_BATCHES):
            events = await repo.events_after(session, after, FANOUT_BATCH)
            if not events:
                break
            created += await _fan_out_batch(session, subs, events, now)
            for event_id, _ in events:
                if event_id <= horizon:
                    new_cursor = event_id
            after = events[-1][0]
            if len(events) < FANOUT_BATCH:
                break
        if new_cursor > last:
            await repo.move_fanout_cursor(session, new_cursor)
        await session.commit()
    return created


# -- delivery -----------------------------------------------------------------------------------
@dataclass
class _Job:
    delivery_id: str
    token: str
    number: int
    url: str
    secret: str
    event_id: str
    body: bytes


@dataclass
class _Outcome:
    started_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def event_body(event: EventRecord) -> bytes:
    payload: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "data": event.data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempt: int) -> float:
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


_LEASE_EXPIRED = "lease expired: the worker did not report an outcome"


def _attempt(
    delivery_id: str, number: int, started_at: datetime, status_code: int | None, error: str | None, duration_ms: int
) -> dict[str, Any]:
    return {
        "id": id_for(WebhookAttempt),
        "delivery_id": delivery_id,
        "number": number,
        "started_at": started_at,
        "status_code": status_code,
        "error": error,
        "duration_ms": duration_ms,
    }


async def claim_due(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None, limit: int | None = None
) -> list[_Job]:
    """Claim due deliveries: each is leased to this caller until `now + LEASE_SECONDS`."""
    now = now or real_now()
    async with sessionmaker() as session:
        due = await repo.claim_due_deliveries(session, now, limit or CLAIM_BATCH)
        if not due:
            return []
        jobs = []
        lost: list[dict] = []  # attempts whose worker never reported
        changed = []
        for d in due:
            row = d.delivery
            if row.claim_token is not None:  # the previous claimer never reported: its lease ran out
                lost.append(
                    _attempt(
                        row.id,
                        row.attempts,
                        row.next_attempt_at - timedelta(seconds=LEASE_SECONDS),
                        None,
                        _LEASE_EXPIRED,
                        int(LEASE_SECONDS * 1000),
                    )
                )
                if row.attempts >= MAX_ATTEMPTS:
                    changed.append(
                        replace(
                            row,
                            status="failed",
                            finished_at=now,
                            claim_token=None,
                            next_attempt_at=None,
                            last_error=_LEASE_EXPIRED,
                        )
                    )
                    continue
            row = replace(
                row,
                attempts=row.attempts + 1,
                claim_token=os.urandom(12).hex(),
                next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
            )
            changed.append(row)
            event = EventRecord(row.event_id, row.event_type, d.occurred_at, d.data)
            jobs.append(_Job(row.id, row.claim_token, row.attempts, d.url, d.secret, row.event_id, event_body(event)))
        await repo.insert_attempts(session, lost)
        await repo.set_deliveries(session, changed)
        await session.commit()
    return jobs


async def _post(client: httpx.AsyncClient, job: _Job) -> _Outcome:
    started = real_now()
    timestamp = int(started.timestamp())
    t0 = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        response = await client.post(
            job.url,
            content=job.body,
            headers={
                "Content-Type": "application/json",
                "LC-Signature": sign(job.secret, job.body, timestamp),
                "LC-Event-Id": job.event_id,
                "LC-Delivery-Id": job.delivery_id,
                "LC-Attempt": str(job.number),
                "User-Agent": "LiveCollab-Webhooks/1",
            },
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except Exception as exc:  # noqa: BLE001 - any failure of the receiver is recorded, then retried
        error = f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__
    return _Outcome(started, status_code, error, int((time.perf_counter() - t0) * 1000))


async def _record(sessionmaker: async_sessionmaker[AsyncSession], results: list[tuple[_Job, _Outcome]], now: datetime) -> None:
    async with sessionmaker() as session:
        rows = await repo.lock_deliveries(session, [j.delivery_id for j, _ in results])
        changed = []
        for job, outcome in results:
            row = rows.get(job.delivery_id)
            if row is None or row.claim_token != job.token or row.status != "pending":
                continue  # the lease ran out and another relay took it over
            row = replace(row, claim_token=None, last_status_code=outcome.status_code, last_error=outcome.error)
            if outcome.ok:
                row = replace(row, status="succeeded", finished_at=real_now(), next_attempt_at=None)
            elif row.attempts >= MAX_ATTEMPTS:
                row = replace(row, status="failed", finished_at=real_now(), next_attempt_at=None)
            else:
                row = replace(row, next_attempt_at=now + timedelta(seconds=backoff(row.attempts)))
            changed.append(row)
        await repo.insert_attempts(
            session,
            [
                _attempt(job.delivery_id, job.number, outcome.started_at, outcome.status_code, outcome.error, outcome.duration_ms)
                for job, outcome in results
                if job.delivery_id in rows
            ],
        )
        await repo.set_deliveries(session, changed)
        await session.commit()


async def deliver_due(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """One relay run: fan out new events, then claim, POST and record every due delivery.
    Returns how many attempts were made. `now` (real time) is for tests."""
    now = now or real_now()
    await fan_out(sessionmaker, now=now)
    total = 0
    while True:
        jobs = await claim_due(sessionmaker, now=now)
        if not jobs:
            return total
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False) as client:
            outcomes = await asyncio.gather(*(_post(client, job) for job in jobs))
        await _record(sessionmaker, list(zip(jobs, outcomes, strict=True)), now)
        total += len(jobs)
        if len(jobs) < CLAIM_BATCH:
            return total
