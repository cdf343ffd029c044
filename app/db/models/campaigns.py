"""Models of the campaigns module: reward campaigns (直播间奖励), their pre-selected creators,
signups with per-shop decisions and planned products, creators' cards and merchants' intents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, Stateful, UTCDateTime, id_column

# Signup states that no longer hold the (campaign, creator, planned_live_at) slot.
RELEASED_STATES = ("withdrawn", "merchant_rejected", "platform_rejected", "expired")
_RELEASED_SQL = "state NOT IN ('withdrawn', 'merchant_rejected', 'platform_rejected', 'expired')"


class Campaign(Stateful, Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = id_column("cmp")
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    signup_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    product_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    live_from: Mapped[datetime] = mapped_column(UTCDateTime)
    live_to: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignEligibleCreator(Base):
    """A creator pre-selected by the platform (平台圈定) for a campaign."""

    __tablename__ = "campaign_eligible_creators"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True, index=True)


class CampaignSignup(Stateful, Base):
    __tablename__ = "campaign_signups"
    __table_args__ = (
        Index(
            "uq_campaign_signups_slot",
            "campaign_id",
            "creator_id",
            "planned_live_at",
            unique=True,
            sqlite_where=text(_RELEASED_SQL),
            postgresql_where=text(_RELEASED_SQL),
        ),
        Index("ix_campaign_signups_creator_state", "creator_id", "state"),
    )

    id: Mapped[str] = id_column("csu")
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id"), index=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    planned_live_at: Mapped[datetime] = mapped_column(UTCDateTime)
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    contact_wechat: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    traffic_units: Mapped[int | None] = mapped_column(Integer)
    traffic_note: Mapped[str | None] = mapped_column(Text)
    live_session_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship(lazy="selectin")
    shops: Mapped[list[CampaignSignupShop]] = relationship(
        lazy="selectin", order_by="CampaignSignupShop.position", cascade="all, delete-orphan"
    )
    items: Mapped[list[CampaignSignupItem]] = relationship(
        lazy="selectin", order_by="CampaignSignupItem.position", cascade="all, delete-orphan"
    )


class CampaignSignupShop(Base):
    """A shop (merchant) listed on a signup: its decision and its stock confirmation."""

    __tablename__ = "campaign_signup_shops"

    signup_id: Mapped[str] = mapped_column(ForeignKey("campaign_signups.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(20), default="pending")  # pending | approved | rejected
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stock_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignSignupItem(Base):
    """A product the creator plans to sell, with the planned quantity (提报商品)."""

    __tablename__ = "campaign_signup_items"

    id: Mapped[str] = id_column("csi")
    signup_id: Mapped[str] = mapped_column(ForeignKey("campaign_signups.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    position: Mapped[int] = mapped_column(Integer)
    planned_quantity: Mapped[int] = mapped_column(Integer)


class CampaignCard(Base):
    """A creator's card for a campaign: contact, intended merchants, cooperation note."""

    __tablename__ = "campaign_cards"

    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    contact_wechat: Mapped[str | None] = mapped_column(String(64))
    intended_merchants: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cooperation_note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignIntent(Base):
    """A merchant's cooperation intent (发布合作意向)."""

    __tablename__ = "campaign_intents"

    id: Mapped[str] = id_column("cin")
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    description: Mapped[str] = mapped_column(Text)
    creator_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
