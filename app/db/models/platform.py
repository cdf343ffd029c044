"""Tables of the platform core: transition history, the event outbox, timers, the test clock,
idempotency keys, in-app notifications and the SMS log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, current_transaction, id_column


class TransitionRecord(Base):
    __tablename__ = "transition_history"
    __table_args__ = (Index("ix_transition_history_entity", "machine", "entity_id", "id"),)

    id: Mapped[str] = id_column("trn")
    machine: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[str] = mapped_column(String(40))
    actor_role: Mapped[str] = mapped_column(String(20))
    reason: Mapped[Any | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """The outbox: written in the transaction of the change it describes."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_position", "tx", "id"),)

    id: Mapped[str] = id_column("evt")
    type: Mapped[str] = mapped_column(String(80), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The order readers follow (the feed, the stream, the webhook fan-out) is the commit order,
    # never the ids' alone (an id is drawn before its transaction commits, so a later reader
    # could find it behind a position it has passed). On PostgreSQL `tx` is the writing
    # transaction's id: a reader takes only events whose transaction has ended (`tx` below its
    # snapshot's xmin) in (tx, id) order, so whatever commits later sorts after. On SQLite,
    # whose writers are serialised, `tx` is 0 and the position is the rowid, given in insert
    # and so commit order (app/db/repositories/events.py).
    tx: Mapped[int] = mapped_column(BigInteger, server_default=current_transaction())


class EventRecipient(Base):
    """Who an event concerns (for `GET /v1/events` and webhook fan-out)."""

    __tablename__ = "event_recipients"
    __table_args__ = (Index("ix_event_recipients_account_event", "account_id", "event_id"),)

    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class Timer(Base):
    """A deadline: fire `action` on `machine`'s entity at `due_at` (if still allowed then)."""

    __tablename__ = "timers"
    __table_args__ = (UniqueConstraint("machine", "entity_id", "action"),)

    id: Mapped[str] = id_column("tmr")
    machine: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ClockState(Base):
    """The test clock: business time = real time + offset. One row, shared by every replica."""

    __tablename__ = "clock_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[str] = id_column("idk")
    account_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[str] = mapped_column(Text)
    extra_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # Real time (not the test clock): retention is 24 h of wall time.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Notification(Base):
    """An in-app message (站内信)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_account_id", "account_id", "id"),)

    id: Mapped[str] = id_column("ntf")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SmsStatus(StrEnum):
    """An SMS's life (`SmsOut.status`)."""

    recorded = "recorded"  # no gateway configured: written to the log only, counted as sent
    queued = "queued"  # waiting for the gateway adapter (retried with back-off)
    sent = "sent"  # the gateway answered 2xx
    failed = "failed"  # every attempt failed


class SmsMessage(Base):
    """Every SMS the service sent (or tried to), whatever the gateway adapter."""

    __tablename__ = "sms_messages"

    id: Mapped[str] = id_column("sms")
    account_id: Mapped[str | None] = mapped_column(String(40), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=SmsStatus.queued)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StreamTicket(Base):
    """A single-use ticket for `GET /v1/events/stream?ticket=…` (browsers' EventSource sends no
    headers): its SHA-256, whose it is, until when. Kept in the database so every replica honours
    it, used up by a conditional UPDATE so it opens one stream only."""

    __tablename__ = "stream_tickets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the ticket
    account_id: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(20))
    # the login session that asked for it: the ticket, and the stream it opens, end with it
    session_id: Mapped[str | None] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
