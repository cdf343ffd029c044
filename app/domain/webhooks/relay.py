"""The delivery relay (a periodic job, `app/modules.py`).

Claim due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and set a lease
(`next_attempt_at = now + LEASE`) in one transaction; POST outside any transaction; record the
outcome in another. A worker killed mid-delivery leaves the lease, which expires: the delivery
is due again. All scheduling uses real wall-clock time, never the test clock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.core.errors import WebhookUrlNotAllowed
from app.core.times import iso_z
from app.db.base import id_for, new_id, table_of
from app.db.bulk import insert_together
from app.db.models.platform import Event, EventRecipient
from app.db.models.webhooks import DeliveryStatus, WebhookAttempt
from app.db.repositories import webhooks as repo
from app.db.repositories.events import EventRecord
from app.domain.notifications import message_rows
from app.domain.webhooks import targets
from app.domain.webhooks.fanout import (
    fan_out,
)

log = logging.getLogger("app.webhooks")

# Retry schedule: attempt n (1-based) failing waits BACKOFF_BASE * 2^(n-1), capped.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ATTEMPTS = 12
LEASE_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0

CLAIM_BATCH = 50
# An endpoint that has failed every delivery this long is disabled (`webhook.disabled`).
DISABLE_AFTER = timedelta(days=5)

# What a failed attempt records: generic, never the transport's own text (which would make the
# relay a port scanner of whatever the URL points at).
TIMEOUT = "timeout"
CONNECT_FAILED = "connect_failed"
URL_NOT_ALLOWED = "url_not_allowed"  # the URL no longer resolves only to public addresses

_EVENTS, _RECIPIENTS = table_of(Event), table_of(EventRecipient)


@dataclass
class _Job:
    delivery_id: str
    token: str
    number: int
    url: str
    secret: str
    event_id: str
    body: bytes
    subscription_id: str = ""
    previous_secret: str | None = None  # signed with as well, until it expires (a rotation)
    failing_since: datetime | None = None  # the subscription's, when claimed


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
        "occurred_at": iso_z(event.occurred_at),
        "data": event.data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(secret: str, body: bytes, timestamp: int, *also: str) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, with one more `v1=` for
    each secret in `also` (the previous one, for 24 h after a rotation, as Stripe does)."""
    signed = f"{timestamp}.".encode() + body
    macs = [hmac.new(key.encode(), signed, hashlib.sha256).hexdigest() for key in (secret, *also)]
    return ",".join([f"t={timestamp}", *(f"v1={mac}" for mac in macs)])


def backoff(attempt: int) -> float:
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)


# the worker that held the attempt died before it recorded an outcome (its lease ran out)
_LEASE_EXPIRED = "lease_expired"


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
                lease_ended = row.next_attempt_at
                assert lease_ended is not None  # a claim is always written with the end of its lease
                lost.append(
                    _attempt(
                        row.id,
                        row.attempts,
                        lease_ended - timedelta(seconds=LEASE_SECONDS),
                        None,
                        _LEASE_EXPIRED,
                        int(LEASE_SECONDS * 1000),
                    )
                )
                if row.attempts >= MAX_ATTEMPTS:
                    changed.append(
                        replace(
                            row,
                            status=DeliveryStatus.failed,
                            finished_at=now,
                            claim_token=None,
                            next_attempt_at=None,
                            last_error=_LEASE_EXPIRED,
                        )
                    )
                    continue
            token = os.urandom(12).hex()
            row = replace(
                row,
                attempts=row.attempts + 1,
                claim_token=token,
                next_attempt_at=now + timedelta(seconds=LEASE_SECONDS),
            )
            changed.append(row)
            event = EventRecord(row.event_id, row.event_type, d.occurred_at, d.data)
            previous = d.previous_secret
            if previous is not None and (d.previous_secret_expires_at is None or d.previous_secret_expires_at <= real_now()):
                previous = None
            jobs.append(
                _Job(
                    row.id,
                    token,
                    row.attempts,
                    d.url,
                    d.secret,
                    row.event_id,
                    event_body(event),
                    row.subscription_id,
                    previous,
                    d.failing_since,
                )
            )
        await repo.insert_attempts(session, lost)
        await repo.set_deliveries(session, changed)
        await session.commit()
    return jobs


async def _post(client: httpx.AsyncClient, job: _Job, target: targets.Target | str) -> _Outcome:
    """POST the job to its checked target, at the address that was checked (a string: the URL
    was refused now, with this error); the outcome's error is one of the generic codes."""
    started = real_now()
    timestamp = int(started.timestamp())
    t0 = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    headers = {
        "Content-Type": "application/json",
        "LC-Signature": sign(job.secret, job.body, timestamp, *([job.previous_secret] if job.previous_secret else [])),
        "LC-Event-Id": job.event_id,
        "LC-Delivery-Id": job.delivery_id,
        "LC-Attempt": str(job.number),
        "User-Agent": "LiveCollab-Webhooks/1",
    }
    if isinstance(target, str):
        error = target
    else:
        # each checked address in turn while connecting fails (a name with several addresses)
        routes = [target.pinned(address) for address in target.addresses] or [(target.url, {}, {})]
        for url, host, extensions in routes:
            try:
                response = await client.post(url, content=job.body, headers={**headers, **host}, extensions=extensions)
            except httpx.TimeoutException:
                error = TIMEOUT
                break
            except httpx.ConnectError:
                error = CONNECT_FAILED
                continue
            except Exception:  # noqa: BLE001 - any failure of the receiver is recorded, then retried
                error = CONNECT_FAILED
                break
            status_code, error = response.status_code, None
            if not 200 <= status_code < 300:
                error = f"http_{status_code}"
            break
    return _Outcome(started, status_code, error, int((time.perf_counter() - t0) * 1000))


async def _targets(jobs: list[_Job]) -> dict[str, targets.Target | str]:
    """Each URL checked once for this run, again at delivery time: DNS may have changed since
    the URL was registered. A URL refused now maps to the error its attempts record."""
    urls = list(dict.fromkeys(job.url for job in jobs))
    checked = await asyncio.gather(*(targets.check(url) for url in urls), return_exceptions=True)
    found: dict[str, targets.Target | str] = {}
    for url, result in zip(urls, checked, strict=True):
        if isinstance(result, targets.Target):
            found[url] = result
        elif isinstance(result, targets.Unresolvable):
            found[url] = CONNECT_FAILED
        elif isinstance(result, WebhookUrlNotAllowed):
            found[url] = URL_NOT_ALLOWED
        else:  # not expected: logged, and the attempt fails like any other
            log.error("checking a webhook URL failed: %s", type(result).__name__)
            found[url] = CONNECT_FAILED
    return found


async def _record(sessionmaker: async_sessionmaker[AsyncSession], results: list[tuple[_Job, _Outcome]], now: datetime) -> None:
    async with sessionmaker() as session:
        rows = await repo.lock_deliveries(session, [j.delivery_id for j, _ in results])
        changed = []
        for job, outcome in results:
            row = rows.get(job.delivery_id)
            if row is None or row.claim_token != job.token or row.status != DeliveryStatus.pending:
                continue  # the lease ran out and another relay took it over
            row = replace(row, claim_token=None, last_status_code=outcome.status_code, last_error=outcome.error)
            if outcome.ok:
                row = replace(row, status=DeliveryStatus.succeeded, finished_at=real_now(), next_attempt_at=None)
            elif row.attempts >= MAX_ATTEMPTS:
                row = replace(row, status=DeliveryStatus.failed, finished_at=real_now(), next_attempt_at=None)
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
    recorded = [(job, outcome) for job, outcome in results if job.delivery_id in rows]
    await _note_outcomes(sessionmaker, recorded, now)


async def _note_outcomes(
    sessionmaker: async_sessionmaker[AsyncSession], results: list[tuple[_Job, _Outcome]], now: datetime
) -> None:
    """Track each endpoint's failing streak; one that has failed every delivery for
    DISABLE_AFTER is disabled and its owner gets `webhook.disabled` (an event and an in-app
    message). A transaction of its own, after the deliveries' (no delivery lock is held while
    subscriptions are locked)."""
    succeeded = {job.subscription_id for job, outcome in results if outcome.ok}
    failed = {job.subscription_id for job, outcome in results if not outcome.ok} - succeeded
    # only what changes: most runs (healthy endpoints, a streak already noted and not yet due)
    # need no transaction at all
    cutoff = now - DISABLE_AFTER
    streaks = {job.subscription_id: job.failing_since for job, _ in results}
    succeeded = {s for s in succeeded if streaks[s] is not None}
    failed = {s for s in failed if streaks[s] is None or streaks[s] <= cutoff}  # type: ignore[operator]
    if not succeeded and not failed:
        return
    async with sessionmaker() as session:
        disabled = await repo.note_outcomes(session, sorted(succeeded), sorted(failed), now, cutoff)
        at = real_now()
        for sub in disabled:
            data = {"webhook_id": sub.id, "url": sub.url, "reason": "failing", "failing_since": sub.failing_since}
            event_id = new_id("evt")
            await insert_together(
                session,
                (_EVENTS, [{"id": event_id, "type": "webhook.disabled", "occurred_at": at, "data": _jsonable(data)}]),
                (_RECIPIENTS, [{"event_id": event_id, "account_id": sub.account_id}]),
                *message_rows(
                    sub.account_id,
                    "webhook.disabled",
                    "Webhook disabled",
                    f"Every delivery to {sub.url} has failed for {DISABLE_AFTER.days} days: the webhook is disabled. "
                    "Fix the receiver and enable it again (PATCH /v1/webhooks/{id} with enabled=true).",
                    _jsonable(data),
                    at,
                ),
            )
        await session.commit()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: iso_z(v) if isinstance(v, datetime) else v for k, v in data.items()}


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
        checked = await _targets(jobs)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False) as client:
            outcomes = await asyncio.gather(*(_post(client, job, checked[job.url]) for job in jobs))
        await _record(sessionmaker, list(zip(jobs, outcomes, strict=True)), now)
        total += len(jobs)
        if len(jobs) < CLAIM_BATCH:
            return total
