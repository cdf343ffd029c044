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
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import real_now
from app.core.times import iso_z
from app.db.base import id_for
from app.db.models.webhooks import WebhookAttempt
from app.db.repositories import webhooks as repo
from app.db.repositories.events import EventRecord
from app.domain.webhooks.fanout import (
    fan_out,
)

# Retry schedule: attempt n (1-based) failing waits BACKOFF_BASE * 2^(n-1), capped.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 3600.0
MAX_ATTEMPTS = 12
LEASE_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 10.0

CLAIM_BATCH = 50


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
        "occurred_at": iso_z(event.occurred_at),
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
                            status="failed",
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
            jobs.append(_Job(row.id, token, row.attempts, d.url, d.secret, row.event_id, event_body(event)))
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
