"""Accounts of every role, with the role's profile as typed columns (queried and indexed)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Money, UTCDateTime, id_column


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = id_column("acc")
    role: Mapped[str] = mapped_column(String(20), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # merchant
    shop_name: Mapped[str | None] = mapped_column(String(100))
    alliance_member: Mapped[bool | None] = mapped_column(Boolean)
    experience_score: Mapped[Decimal | None] = mapped_column(Numeric(3, 2))
    xingtu_account_id: Mapped[str | None] = mapped_column(String(64))
    # creator
    nickname: Mapped[str | None] = mapped_column(String(100), index=True)
    level: Mapped[int | None] = mapped_column(Integer)
    followers: Mapped[int | None] = mapped_column(Money)
    accepting_orders: Mapped[bool | None] = mapped_column(Boolean)
    quote_dedicated_hourly_fen: Mapped[int | None] = mapped_column(Money)
    quote_shared_hourly_fen: Mapped[int | None] = mapped_column(Money)
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    contact_wechat: Mapped[str | None] = mapped_column(String(64))
    # agency, group leader, service provider
    org_name: Mapped[str | None] = mapped_column(String(100))
    head_annual: Mapped[bool | None] = mapped_column(Boolean)
    certified: Mapped[bool | None] = mapped_column(Boolean)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = id_column("prd")
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    brand: Mapped[str | None] = mapped_column(String(100))
    price_fen: Mapped[int] = mapped_column(Money)
    inventory: Mapped[int] = mapped_column(Money)
    general_commission_bp: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="on_sale")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
