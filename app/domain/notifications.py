"""In-app notifications (站内信) and SMS, written in the transaction of the change.

SMS rows are the outbox of the SMS gateway adapter: with no gateway configured the recorder
adapter keeps them (status `recorded`); with `LC_SMS_GATEWAY_URL` they are `queued` and a relay
posts them after commit."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import get_settings
from app.core.enums import OneOf
from app.core.times import UtcDatetime
from app.db.base import new_id, table_of
from app.db.bulk import Part, insert_together
from app.db.models.platform import Notification, SmsMessage, SmsStatus
from app.db.repositories import notifications as repo
from app.domain.accounts import Role
from app.state import clock
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING

_SMS_MESSAGES, _NOTIFICATIONS = table_of(SmsMessage), table_of(Notification)

# every kind of in-app message (`NotificationKind` in OpenAPI): a message is written only with one
# of these (`message_rows` refuses any other), so a client can switch over them exhaustively
NOTIFICATION_KINDS = OneOf(
    "NotificationKind",
    [
        *(
            f"task_order.{event}"
            for event in ("created", "reminded", "accepted", "rejected", "started", "ended", "completed", "cancelled", "expired")
        ),
        "dispute.created",
        "dispute.resolved",
        "top_up.confirmed",
        "top_up.rejected",
        "top_up.expired",
        "campaign_intent.created",
        "campaign_signup.created",
        "campaign_signup.traffic_granted",
        "campaign_signup.products_submitted",
        # a signup's move to a new state, announced to its creator
        *(f"campaign_signup.{state}" for state in CAMPAIGN_SIGNUP.states),
        *(f"{binding.name}.invited" for binding in (CREATOR_BINDING, SHOP_BINDING)),
        "outreach.conversation_opened",
        "webhook.disabled",
    ],
)


class NotificationData(BaseModel):
    """What a message is about (`data`), for a client to open: each kind fills the members that
    name its entities and leaves out the rest. `message_rows` refuses any other key."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _only_given(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # the members this kind names, not sixteen nulls
        return {key: value for key, value in handler(self).items() if value is not None}

    task_order_id: str | None = None
    live_session_id: str | None = None
    compensation_fen: int | None = Field(default=None, description="task_order.cancelled: what the creator gets")
    dispute_id: str | None = None
    top_up_id: str | None = None
    campaign_id: str | None = None
    intent_id: str | None = None
    signup_id: str | None = None
    binding_id: str | None = None
    conversation_id: str | None = None
    opener_id: str | None = None
    opener_role: Role | None = None
    webhook_id: str | None = None
    url: str | None = Field(default=None, description="webhook.disabled: the receiver's URL")
    reason: str | None = Field(default=None, description="webhook.disabled: why (`failing`)")
    failing_since: UtcDatetime | None = Field(default=None, description="webhook.disabled: the first failure of the streak")


NOTIFICATION_DATA_KEYS = frozenset(NotificationData.model_fields)


@dataclass(frozen=True, slots=True)
class Written:
    """The id of a message or SMS row just written."""

    id: str


async def notify(
    session: AsyncSession, account_id: str, kind: str, title: str, body: str, data: dict[str, Any] | None = None
) -> Written:
    """An in-app message to one account, written now (one statement)."""
    parts = message_rows(account_id, kind, title, body, data, await clock.now(session))
    await insert_together(session, *parts)
    return Written(parts[0][1][0]["id"])


async def send_sms(session: AsyncSession, account_id: str | None, phone: str | None, text: str) -> Written | None:
    """An SMS with exactly `text` (None without a phone), written now; the gateway adapter
    sends it after commit."""
    if not phone:
        return None
    part = _sms_row(account_id, phone, text, await clock.now(session))
    await insert_together(session, part)
    return Written(part[1][0]["id"])


def _sms_row(account_id: str | None, phone: str, text: str, now: datetime) -> Part:
    recorded = not get_settings().sms_gateway_url
    return (
        _SMS_MESSAGES,
        [
            {
                "id": new_id("sms"),
                "account_id": account_id,
                "phone": phone,
                "text": text,
                "status": SmsStatus.recorded if recorded else SmsStatus.queued,
                "attempts": 0,
                "created_at": now,
                "sent_at": now if recorded else None,
            }
        ],
    )


def message_rows(
    account_id: str, kind: str, title: str, body: str, data: dict[str, Any] | None, now: datetime, *, sms_phone: str | None = None
) -> list[Part]:
    """The in-app message (and the SMS to `sms_phone`) as rows for `insert_together` or a
    transition's `also=`: written in the statement of the change they announce."""
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"{kind!r} is not in NOTIFICATION_KINDS")
    if data and not data.keys() <= NOTIFICATION_DATA_KEYS:
        raise ValueError(f"{sorted(data.keys() - NOTIFICATION_DATA_KEYS)} not in NOTIFICATION_DATA_KEYS")
    parts: list[Part] = [
        (
            _NOTIFICATIONS,
            [
                {
                    "id": new_id("ntf"),
                    "account_id": account_id,
                    "kind": kind,
                    "title": title,
                    "body": body,
                    "data": data,
                    "created_at": now,
                    "read_at": None,
                }
            ],
        )
    ]
    if sms_phone:
        parts.append(_sms_row(account_id, sms_phone, f"【Live Collab】{title}：{body}", now))
    return parts


async def notify_with_sms(
    session: AsyncSession,
    account_id: str,
    phone: str | None,
    kind: str,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> None:
    """The in-app message plus an SMS to `phone`, where there is one (one statement)."""
    await insert_together(session, *message_rows(account_id, kind, title, body, data, await clock.now(session), sms_phone=phone))


# -- the HTTP gateway adapter -------------------------------------------------------------------
# With `LC_SMS_GATEWAY_URL`, queued rows are POSTed as JSON `{phone, text}` by the relay below:
# claimed with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL) in one transaction, sent outside
# any transaction, the outcome recorded in another (one executemany per table each time). A 2xx
# answer marks the row `sent`; failures are retried with exponential back-off (real wall-clock
# time) and end `failed` after SMS_MAX_ATTEMPTS attempts.
SMS_MAX_ATTEMPTS = 5
SMS_LEASE_SECONDS = 30.0
SMS_BACKOFF_BASE_SECONDS = 2.0
SMS_BACKOFF_CAP_SECONDS = 600.0
SMS_TIMEOUT_SECONDS = 10.0
SMS_BATCH = 50


@dataclass
class _SmsJob:
    sms_id: str
    token: str
    phone: str
    text: str


async def _claim_sms(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> list[_SmsJob]:
    async with sessionmaker() as session:
        jobs = []
        messages: list[dict] = []
        dispatch: list[dict] = []
        claimed = await repo.claim_queued_sms(session, now, SMS_BATCH)
        # A message another relay claimed and committed after this claim's snapshot was taken is
        # locked here all the same, its relay row read from the old snapshot (PostgreSQL
        # rechecks only the locked row): read the relay rows afresh and leave those it now holds.
        current = await repo.dispatch_now(session, [due.id for due in claimed])
        for due in claimed:
            if current.get(due.id, (None, None)) != ((due.next_attempt_at, due.claim_token) if due.dispatched else (None, None)):
                continue
            state = {
                "sms_id": due.id,
                "next_attempt_at": due.next_attempt_at if due.dispatched else now,
                "claim_token": due.claim_token,
                "last_status_code": due.last_status_code,
                "last_error": due.last_error,
            }
            if due.claim_token is not None:  # the previous claimer never reported: its lease ran out
                state["last_error"] = "lease expired: the worker did not report an outcome"
                if due.attempts >= SMS_MAX_ATTEMPTS:
                    messages.append({"id": due.id, "status": SmsStatus.failed, "attempts": due.attempts, "sent_at": None})
                    dispatch.append({**state, "claim_token": None})
                    continue
            token = os.urandom(12).hex()
            messages.append({"id": due.id, "status": SmsStatus.queued, "attempts": (due.attempts or 0) + 1, "sent_at": None})
            dispatch.append({**state, "claim_token": token, "next_attempt_at": now + timedelta(seconds=SMS_LEASE_SECONDS)})
            jobs.append(_SmsJob(due.id, token, due.phone, due.text))
        await repo.set_sms(session, messages)
        await repo.set_dispatch(session, dispatch)
        await session.commit()
    return jobs


async def _post_sms(client: httpx.AsyncClient, url: str, job: _SmsJob) -> tuple[int | None, str | None]:
    try:
        response = await client.post(url, json={"phone": job.phone, "text": job.text})
    except Exception as exc:  # noqa: BLE001 - any gateway failure is recorded, then retried
        return None, f"{type(exc).__name__}: {exc}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def send_queued_sms(sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Send every due queued SMS through the HTTP gateway. Returns how many attempts were made.
    `now` (real time) is for tests. Does nothing with the recorder adapter (no gateway URL)."""
    url = get_settings().sms_gateway_url
    if not url:
        return 0
    now = now or clock.real_now()
    total = 0
    while True:
        jobs = await _claim_sms(sessionmaker, now)
        if not jobs:
            return total
        async with httpx.AsyncClient(timeout=SMS_TIMEOUT_SECONDS) as client:
            outcomes = await asyncio.gather(*(_post_sms(client, url, job) for job in jobs))
        await _record_sms(sessionmaker, list(zip(jobs, outcomes, strict=True)), now)
        total += len(jobs)
        if len(jobs) < SMS_BATCH:
            return total


async def _record_sms(
    sessionmaker: async_sessionmaker[AsyncSession], results: list[tuple[_SmsJob, tuple[int | None, str | None]]], now: datetime
) -> None:
    async with sessionmaker() as session:
        claimed = await repo.lock_claimed_sms(session, [job.sms_id for job, _ in results])
        sent_at = await clock.now(session)
        messages: list[dict] = []
        dispatch: list[dict] = []
        for job, (status_code, error) in results:
            row = claimed.get(job.sms_id)
            if row is None or row.claim_token != job.token or row.status != SmsStatus.queued:
                continue  # the lease ran out and another relay took it over
            status, next_attempt_at = row.status, row.next_attempt_at
            if error is None:
                status = SmsStatus.sent
            elif row.attempts >= SMS_MAX_ATTEMPTS:
                status = SmsStatus.failed
            else:
                delay = min(SMS_BACKOFF_BASE_SECONDS * 2 ** (row.attempts - 1), SMS_BACKOFF_CAP_SECONDS)
                next_attempt_at = now + timedelta(seconds=delay)
            messages.append(
                {
                    "id": row.id,
                    "status": status,
                    "attempts": row.attempts,
                    "sent_at": sent_at if status == SmsStatus.sent else None,
                }
            )
            dispatch.append(
                {
                    "sms_id": row.id,
                    "next_attempt_at": next_attempt_at,
                    "claim_token": None,
                    "last_status_code": status_code,
                    "last_error": error,
                }
            )
        await repo.set_sms(session, messages)
        await repo.set_dispatch(session, dispatch)
        await session.commit()
