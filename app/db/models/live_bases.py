"""Models of the live_bases module: bases, creator and shop bindings, the product pool,
check-ins and cooperations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Stateful, UTCDateTime, id_column


class LiveBase(Base):
    __tablename__ = "live_bases"

    id: Mapped[str] = id_column("lbs")
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreatorBinding(Stateful, Base):
    __tablename__ = "creator_bindings"
    __table_args__ = (Index("ix_creator_bindings_creator_state", "creator_id", "state"),)

    id: Mapped[str] = id_column("cbd")
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    commission_bp: Mapped[int] = mapped_column(Integer)
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    began_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ShopBinding(Stateful, Base):
    __tablename__ = "shop_bindings"
    __table_args__ = (Index("ix_shop_bindings_shop_state", "shop_id", "state"),)

    id: Mapped[str] = id_column("sbd")
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    binding_type: Mapped[str] = mapped_column(String(20), default="live_base")
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    began_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PoolItem(Base):
    """A product of an actively bound shop in an agency's pool (选品)."""

    __tablename__ = "pool_items"
    __table_args__ = (UniqueConstraint("agency_id", "product_id"), Index("ix_pool_items_agency_shop", "agency_id", "shop_id"))

    id: Mapped[str] = id_column("ppi")
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    qualifies: Mapped[bool] = mapped_column(Boolean)
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CheckIn(Stateful, Base):
    __tablename__ = "check_ins"
    __table_args__ = (
        Index("ix_check_ins_creator_state", "creator_id", "state"),
        Index("ix_check_ins_base_checked_in", "base_id", "checked_in_at"),
    )

    id: Mapped[str] = id_column("cki")
    base_id: Mapped[str] = mapped_column(ForeignKey("live_bases.id"))
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    eligible: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cooperation_id: Mapped[str | None] = mapped_column(String(40))


class Cooperation(Stateful, Base):
    __tablename__ = "cooperations"
    __table_args__ = (Index("ix_cooperations_creator_state", "creator_id", "state"),)

    id: Mapped[str] = id_column("coo")
    base_id: Mapped[str] = mapped_column(ForeignKey("live_bases.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
