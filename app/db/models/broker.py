"""Model of the broker relay: one row per broker target (a NATS JetStream stream, a RabbitMQ
exchange) with the outbox position published so far and the lease of the relay publishing now.

The position is the feed's commit-order position (`app/db/repositories/events.py`): on
PostgreSQL the writing transaction's id and the event's id, on SQLite 0 and the rowid (kept as
its decimal text). Lease times are real wall-clock time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime


class BrokerRelayPosition(Base):
    __tablename__ = "broker_relay_positions"

    # the target: `nats://host:port/STREAM` or `amqp://host:port/vhost/exchange` (no credentials)
    broker: Mapped[str] = mapped_column(String(300), primary_key=True)
    tx: Mapped[int] = mapped_column(BigInteger, default=0)
    event_key: Mapped[str] = mapped_column(String(40), default="")
    last_event_id: Mapped[str | None] = mapped_column(String(40))
    published: Mapped[int] = mapped_column(BigInteger, default=0)  # events published (acknowledged) in all
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
