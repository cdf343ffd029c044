"""Models of the webhooks module: subscriptions, deliveries (one per subscription and event),
their attempts, the relay's fan-out cursor, and the SMS relay's per-message dispatch state.

Delivery scheduling columns hold real wall-clock time (never the test clock)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, id_column


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (Index("ix_webhook_subscriptions_account_id", "account_id", "id"),)

    id: Mapped[str] = id_column("whk")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    owner_role: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Only events with a greater id are delivered (events written after the subscription).
    since_event_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The secret before the last rotation, also signed with until it expires (24 h).
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when every attempt has failed (None after a success); 5 days of it disables the hook.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why it is disabled: `failing` (by the relay) or `owner` (PATCH enabled=false); None when enabled.
    disabled_reason: Mapped[str | None] = mapped_column(String(40))


class DeliveryStatus(StrEnum):
    """A webhook delivery's life (`DeliveryOut.status`)."""

    pending = "pending"  # waiting for its first or next attempt
    succeeded = "succeeded"  # the receiver answered 2xx
    failed = "failed"  # every attempt failed, or the receiver refused it for good


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),
    )

    id: Mapped[str] = id_column("whd")
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[str] = id_column("wha")
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookFanoutCursor(Base):
    """One row: every event with an id at or below `last_event_id` has been fanned out."""

    __tablename__ = "webhook_fanout_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[str] = mapped_column(String(40), default="")


class SmsDispatch(Base):
    """Relay state of a queued SMS (`sms_messages` is the core's outbox): the lease / next
    attempt time and the last error."""

    __tablename__ = "sms_dispatch"

    sms_id: Mapped[str] = mapped_column(ForeignKey("sms_messages.id", ondelete="CASCADE"), primary_key=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
