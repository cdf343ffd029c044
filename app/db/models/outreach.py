"""Models of the outreach module: conversations, their messages and read markers, weekly
quota rows, and the quota policies (each effective from a week)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Money, UTCDateTime, id_column


class Conversation(Base):
    """One conversation per pair of accounts. `account_low` < `account_high` (the ordered pair)
    is unique, so two racing opens of the same pair create one row."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("account_low", "account_high"),)

    id: Mapped[str] = id_column("cnv")
    account_low: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    account_high: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    opener_id: Mapped[str] = mapped_column(String(40))
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConversationMember(Base):
    """A participant's view of a conversation: its last-read marker (a message `seq`) and the
    conversation's last activity, denormalised so an account's list is one index range."""

    __tablename__ = "conversation_members"
    __table_args__ = (Index("ix_conversation_members_account_activity", "account_id", "last_activity_at", "conversation_id"),)

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    last_read_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[str] = id_column("msg")
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    sender_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutreachQuota(Base):
    """One account's units of one kind towards one counterpart role in one natural week. The
    limit is a snapshot taken when the row is created (first use or first look in the week);
    `used` only moves through a conditional `UPDATE … WHERE used < quota_limit`."""

    __tablename__ = "outreach_quotas"
    __table_args__ = (UniqueConstraint("account_id", "week_start", "kind", "counterpart_role"),)

    id: Mapped[str] = id_column("oqt")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    week_start: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(20))
    counterpart_role: Mapped[str] = mapped_column(String(20))
    quota_limit: Mapped[int] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0)
    basis_type: Mapped[str] = mapped_column(String(20))
    basis_value: Mapped[int | None] = mapped_column(Money)
    policy_effective_week: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuotaPolicy(Base):
    """The quota policy in force from `effective_week` (a Monday 00:00 Asia/Shanghai) on."""

    __tablename__ = "quota_policies"

    id: Mapped[str] = id_column("qpl")
    effective_week: Mapped[datetime] = mapped_column(UTCDateTime, unique=True)
    merchant_tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    creator_tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    fixed: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
