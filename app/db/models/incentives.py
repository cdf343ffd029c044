"""Models of the incentives module: provider contracts, programs, monthly statements, vouchers,
redemptions and the operator's holiday list."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Money, Stateful, UTCDateTime, id_column

_LIVE = text("state IN ('proposed', 'active')")


class ProviderContract(Stateful, Base):
    """服务商后台签约: a provider and a merchant. `activated_at`/`ended_at` record the active
    interval that the monthly computation reads."""

    __tablename__ = "provider_contracts"
    __table_args__ = (
        # one live (proposed or active) contract per pair
        Index(
            "uq_provider_contracts_live_pair",
            "provider_id",
            "merchant_id",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        Index("ix_provider_contracts_merchant", "merchant_id"),
    )

    id: Mapped[str] = id_column("pct")
    provider_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    mode: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(500))


class IncentiveProgram(Base):
    __tablename__ = "incentive_programs"

    id: Mapped[str] = id_column("ipg")
    name: Mapped[str] = mapped_column(String(200))
    month_from: Mapped[str] = mapped_column(String(7))
    month_to: Mapped[str] = mapped_column(String(7))
    coefficient_bp: Mapped[int] = mapped_column(Integer)
    v3_reward_fen: Mapped[int] = mapped_column(Money)
    v4_reward_fen: Mapped[int] = mapped_column(Money)
    min_active_merchants: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncentiveStatement(Stateful, Base):
    """One provider's result for one month of a program (draft until published)."""

    __tablename__ = "incentive_statements"
    __table_args__ = (
        UniqueConstraint("program_id", "month", "provider_id"),
        Index("ix_incentive_statements_provider", "provider_id", "id"),
        Index("ix_incentive_statements_month", "month", "id"),
    )

    id: Mapped[str] = id_column("ist")
    program_id: Mapped[str] = mapped_column(ForeignKey("incentive_programs.id"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    month: Mapped[str] = mapped_column(String(7))
    eligible: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    active_merchants: Mapped[int] = mapped_column(Integer)
    dimension1: Mapped[list[Any]] = mapped_column(JSON)
    dimension2: Mapped[list[Any]] = mapped_column(JSON)
    total_fen: Mapped[int] = mapped_column(Money)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TierAward(Base):
    """A merchant counted in dimension 2 (at most once per calendar year, any program)."""

    __tablename__ = "incentive_tier_awards"
    __table_args__ = (UniqueConstraint("merchant_id", "year"),)

    id: Mapped[str] = id_column("ita")
    statement_id: Mapped[str] = mapped_column(ForeignKey("incentive_statements.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[str] = mapped_column(String(40))
    merchant_id: Mapped[str] = mapped_column(String(40))
    year: Mapped[int] = mapped_column(Integer)
    month: Mapped[str] = mapped_column(String(7))
    tier: Mapped[int] = mapped_column(Integer)
    reward_fen: Mapped[int] = mapped_column(Money)


class Voucher(Stateful, Base):
    """A traffic voucher (流量券). `remaining_fen` is the balance not yet reserved by a
    requested, approved or redeemed redemption."""

    __tablename__ = "vouchers"
    __table_args__ = (Index("ix_vouchers_provider", "provider_id", "id"),)

    id: Mapped[str] = id_column("vch")
    program_id: Mapped[str] = mapped_column(ForeignKey("incentive_programs.id"))
    statement_id: Mapped[str] = mapped_column(ForeignKey("incentive_statements.id"), index=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    month: Mapped[str] = mapped_column(String(7))
    dimension: Mapped[int] = mapped_column(Integer)
    merchant_id: Mapped[str | None] = mapped_column(String(40))
    amount_fen: Mapped[int] = mapped_column(Money)
    remaining_fen: Mapped[int] = mapped_column(Money)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Redemption(Stateful, Base):
    __tablename__ = "redemptions"

    id: Mapped[str] = id_column("rdm")
    voucher_id: Mapped[str] = mapped_column(ForeignKey("vouchers.id"), index=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount_fen: Mapped[int] = mapped_column(Money)
    use_date: Mapped[date] = mapped_column(Date)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reject_reason: Mapped[str | None] = mapped_column(String(500))


class Holiday(Base):
    """A non-working day (Asia/Shanghai calendar) for the redemption notice rule."""

    __tablename__ = "incentive_holidays"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
