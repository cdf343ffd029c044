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
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.base import new_id
from app.db.models.platform import Event, EventRecipient
from app.db.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookFanoutCursor, WebhookSubscription
from app.db.pagination import keyset_page
from app.domain.clock import real_now
from app.domain.errors import NotFound
from app.domain.schemas import Out, Strict
from app.state.core import Actor
from app.workers import periodic

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
    event_types: list[Annotated[str, Field(max_length=100)]] = Field(min_length=1, max_length=50,
                                   description="Event types (`task_order.accepted`), `<machine>.*` or `*`")
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
async def create_subscription(session: AsyncSession, actor: Actor, body: WebhookCreate) -> WebhookSubscription:
    sub = WebhookSubscription(account_id=actor.id, owner_role=actor.role, url=body.url,
                              event_types=body.event_types, secret=body.secret, active=True,
                              since_event_id=new_id("evt"), created_at=real_now())
    session.add(sub)
    await session.flush()
    return sub


async def list_subscriptions(session: AsyncSession, actor: Actor, *, limit: int,
                             cursor: str | None) -> tuple[list[WebhookSubscription], str | None]:
    query = select(WebhookSubscription).where(WebhookSubscription.account_id == actor.id)
    return await keyset_page(session, query, WebhookSubscription.id, limit=limit, cursor=cursor)


async def list_deliveries(session: AsyncSession, actor: Actor, subscription_id: str, *, status: str | None,
                          limit: int, cursor: str | None) -> tuple[list[DeliveryOut], str | None]:
    sub = await session.scalar(select(WebhookSubscription).where(
        WebhookSubscription.id == subscription_id, WebhookSubscription.account_id == actor.id))
    if sub is None:
        raise NotFound(f"webhook {subscription_id} not found")
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    rows, next_cursor = await keyset_page(session, query, WebhookDelivery.id, limit=limit, cursor=cursor)
    log: dict[str, list[WebhookAttempt]] = defaultdict(list)
    if rows:
        attempts = await session.scalars(select(WebhookAttempt).where(
            WebhookAttempt.delivery_id.in_([r.id for r in rows])).order_by(WebhookAttempt.number,
                                                                            WebhookAttempt.id))
        for a in attempts:
            log[a.delivery_id].append(a)
    items = [DeliveryOut.model_validate(r).model_copy(update={
        "attempt_log": [AttemptOut.model_validate(a) for a in log[r.id]]}) for r in rows]
    return items, next_cursor


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


async def _fan_out_batch(session: AsyncSession, subs: list[WebhookSubscription], events: list[tuple[str, str]],
                         now: datetime) -> int:
    ids = [event_id for event_id, _ in events]
    recipients: dict[str, set[str]] = defaultdict(set)
    for event_id, account_id in await session.execute(
            select(EventRecipient.event_id, EventRecipient.account_id).where(EventRecipient.event_id.in_(ids))):
        recipients[event_id].add(account_id)
    existing = {(s, e) for s, e in await session.execute(
        select(WebhookDelivery.subscription_id, WebhookDelivery.event_id).where(WebhookDelivery.event_id.in_(ids)))}
    rows = []
    for event_id, event_type in events:
        for sub in subs:
            if event_id <= sub.since_event_id or (sub.id, event_id) in existing:
                continue
            if sub.owner_role != "operator" and sub.account_id not in recipients[event_id]:
                continue
            if not matches(sub.event_types, event_type):
                continue
            rows.append(WebhookDelivery(subscription_id=sub.id, event_id=event_id, event_type=event_type,
                                        status="pending", attempts=0, next_attempt_at=now, created_at=now))
    if rows:
        session.add_all(rows)
        await session.flush()
    return len(rows)


async def _oldest_open_transaction(session: AsyncSession, now: datetime) -> datetime | None:
    """Start of the oldest other transaction open on this database (PostgreSQL; None on
    SQLite, whose writers are serialised). A batch of timers fired in one transaction under lock
    contention can stay open for tens of seconds: its first events carry ids drawn at its start
    and become visible only at its commit."""
    if session.bind.dialect.name != "postgresql":
        return None
    oldest = await session.scalar(text(
        "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL"))
    if oldest is None or oldest < now - timedelta(seconds=OPEN_TRANSACTION_WAIT_SECONDS):
        return None
    return oldest


async def fan_out(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Create the deliveries of events not yet fanned out. One relay at a time does it (the
    cursor row is locked; another replica skips). Returns how many deliveries were created."""
    now = now or real_now()
    created = 0
    async with sessionmaker() as session:
        cursor_row = await session.scalar(select(WebhookFanoutCursor).where(WebhookFanoutCursor.id == 1)
                                          .with_for_update(skip_locked=True))
        if cursor_row is None:
            if await session.scalar(select(func.count()).select_from(WebhookFanoutCursor)):
                return 0  # another relay holds it
            cursor_row = WebhookFanoutCursor(id=1, last_event_id="")
            session.add(cursor_row)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                return 0
        settled = now
        oldest = await _oldest_open_transaction(session, now)
        if oldest is not None:
            settled = min(settled, oldest)
        horizon = _id_floor("evt", settled - timedelta(seconds=SETTLE_SECONDS))
        subs = list((await session.scalars(select(WebhookSubscription).where(
            WebhookSubscription.active.is_(True)))).all())
        if not subs:
            # Nothing to deliver: every settled event is done (a later subscription only
            # receives events written after it).
            cursor_row.last_event_id = max(cursor_row.last_event_id, horizon)
            await session.commit()
            return 0
        after = new_cursor = cursor_row.last_event_id
        for _ in range(FANOUT_MAX_BATCHES):
            events = [(i, t) for i, t in await session.execute(
                select(Event.id, Event.type).where(Event.id > after).order_by(Event.id).limit(FANOUT_BATCH))]
            if not events:
                break
            created += await _fan_out_batch(session, subs, events, now)
            for event_id, _ in events:
                if event_id <= horizon:
                    new_cursor = event_id
            after = events[-1][0]
            if len(events) < FANOUT_BATCH:
                break
        if new_cursor > cursor_row.last_event_id:
            cursor_row.last_event_id = new_cursor
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


def event_body(event: Event) -> bytes:
    payload: dict[str, Any] = {"id": event.id, "type": event.type,
                               "occurred_at": event.occurred_at.isoformat(), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempt: int) -> float:
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


async def claim_due(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None,
                    limit: int | None = None) -> list[_Job]:
    """Claim due deliveries: each is leased to this caller until `now + LEASE_SECONDS`."""
    now = now or real_now()
    limit = limit or CLAIM_BATCH
    async with sessionmaker() as session:
        rows = (await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
            .with_for_update(skip_locked=True))).scalars().all()
        if not rows:
            return []
        subs = {s.id: s for s in await session.scalars(select(WebhookSubscription).where(
            WebhookSubscription.id.in_({r.subscription_id for r in rows})))}
        events = {e.id: e for e in await session.scalars(select(Event).where(
            Event.id.in_({r.event_id for r in rows})))}
        jobs = []
        for row in rows:
            if row.claim_token is not None:  # the previous claimer never reported: its lease ran out
                session.add(WebhookAttempt(
                    delivery_id=row.id, number=row.attempts, started_at=row.next_attempt_at - timedelta(
                        seconds=LEASE_SECONDS), status_code=None, duration_ms=int(LEASE_SECONDS * 1000),
                    error="lease expired: the worker did not report an outcome"))
                if row.attempts >= MAX_ATTEMPTS:
                    row.status, row.finished_at, row.claim_token = "failed", now, None
                    row.next_attempt_at = None
                    row.last_error = "lease expired: the worker did not report an outcome"
                    continue
            sub = subs[row.subscription_id]
            row.attempts += 1
            row.claim_token = os.urandom(12).hex()
            row.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
            jobs.append(_Job(row.id, row.claim_token, row.attempts, sub.url, sub.secret, row.event_id,
                             event_body(events[row.event_id])))
        await session.commit()
    return jobs


async def _post(client: httpx.AsyncClient, job: _Job) -> _Outcome:
    started = real_now()
    timestamp = int(started.timestamp())
    t0 = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    try:
        response = await client.post(job.url, content=job.body, headers={
            "Content-Type": "application/json", "LC-Signature": sign(job.secret, job.body, timestamp),
            "LC-Event-Id": job.event_id, "LC-Delivery-Id": job.delivery_id, "LC-Attempt": str(job.number),
            "User-Agent": "LiveCollab-Webhooks/1"})
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except Exception as exc:  # noqa: BLE001 - any failure of the receiver is recorded, then retried
        error = f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__
    return _Outcome(started, status_code, error, int((time.perf_counter() - t0) * 1000))


async def _record(sessionmaker: async_sessionmaker[AsyncSession], results: list[tuple[_Job, _Outcome]],
                  now: datetime) -> None:
    async with sessionmaker() as session:
        rows = {r.id: r for r in await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.id.in_([j.delivery_id for j, _ in results]))
            .order_by(WebhookDelivery.id).with_for_update())}
        for job, outcome in results:
            session.add(WebhookAttempt(delivery_id=job.delivery_id, number=job.number,
                                       started_at=outcome.started_at, status_code=outcome.status_code,
                                       error=outcome.error, duration_ms=outcome.duration_ms))
            row = rows.get(job.delivery_id)
            if row is None or row.claim_token != job.token or row.status != "pending":
                continue  # the lease ran out and another relay took it over
            row.claim_token = None
            row.last_status_code = outcome.status_code
            row.last_error = outcome.error
            if outcome.ok:
                row.status, row.finished_at, row.next_attempt_at = "succeeded", real_now(), None
            elif row.attempts >= MAX_ATTEMPTS:
                row.status, row.finished_at, row.next_attempt_at = "failed", real_now(), None
            else:
                row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts))
        await session.commit()


@periodic("webhook-relay", 1.0)
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
