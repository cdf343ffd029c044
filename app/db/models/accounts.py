"""Accounts of every role, with the role's profile as typed columns (queried and indexed)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String
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
    # an operator's suspension: no login, every session ended (POST /v1/accounts/{id}/suspend)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspension_reason: Mapped[str | None] = mapped_column(String(500))


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


class AuthSession(Base):
    """A login: every bearer token names one (`sid`), and a request is served only while it is
    live (not ended, not expired). Ending it (logout, password change, suspension) refuses its
    token everywhere at once."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = id_column("ses")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # why it ended: logout, password_changed, suspended
    reason: Mapped[str | None] = mapped_column(String(20))


class LoginFailure(Base):
    """A failed login, counted by username and by client address over the rate-limit window
    (kept in the database so every replica counts the same)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "failed_at"),
        Index("ix_login_failures_client_at", "client_ip", "failed_at"),
    )

    id: Mapped[str] = id_column("lgf")
    username: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
