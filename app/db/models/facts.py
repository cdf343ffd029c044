"""Facts pushed by the upstream commerce systems (role `platform`), idempotent by external id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Money, UTCDateTime, id_column


class SalesOrder(Base):
    """An alliance order. GMV = paid minus refunded `amount_fen`."""

    __tablename__ = "sales_orders"
    __table_args__ = (
        Index("ix_sales_orders_shop_paid", "shop_id", "paid_at"),
        Index("ix_sales_orders_creator_paid", "creator_id", "paid_at"),
        Index("ix_sales_orders_session", "live_session_id"),
    )

    id: Mapped[str] = id_column("ord")
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"))
    channel: Mapped[str] = mapped_column(String(20))
    # The live session's id in this service (resolved from the upstream external id when given).
    live_session_id: Mapped[str | None] = mapped_column(String(100))
    amount_fen: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LiveSession(Base):
    __tablename__ = "live_sessions"
    __table_args__ = (Index("ix_live_sessions_host_started", "host_id", "started_at"),)

    id: Mapped[str] = id_column("lss")
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    peak_viewers: Mapped[int] = mapped_column(Money, default=0)
    room_url: Mapped[str] = mapped_column(String(500))


class MerchantTier(Base):
    """Live tier V0–V4 of a merchant for a month ("YYYY-MM")."""

    __tablename__ = "merchant_tiers"
    __table_args__ = (UniqueConstraint("merchant_id", "month"),)

    id: Mapped[str] = id_column("mtr")
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    month: Mapped[str] = mapped_column(String(7), index=True)
    tier: Mapped[int] = mapped_column(Integer)
