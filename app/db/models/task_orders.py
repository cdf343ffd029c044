"""Models of the task_orders module: wallets and the double-entry ledger, holds, top-ups,
task orders with their products, live-session links and targeted plans, and disputes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Money, Stateful, UTCDateTime, id_column

EXTERNAL_OWNER = "external"  # the wallet of the outside world (bank, payment gateway)


class LedgerKind(StrEnum):
    """What a ledger transaction is (`EntryOut.kind`)."""

    top_up = "top_up"  # money brought in: external → available
    freeze = "freeze"  # available → frozen, a hold starts
    paid = "paid"  # a hold ends wholly to the payee
    released = "released"  # a hold ends wholly back to the payer
    partly_paid = "split"  # a hold ends part to each (`split`: the member may not shadow str.split)
    transfer = "transfer"  # available → available between two accounts
    dispute = "dispute"  # a dispute's ruling moves money after settlement


class Bucket(StrEnum):
    """The part of a wallet a ledger line moves (`EntryOut.bucket`)."""

    available = "available"
    frozen = "frozen"


class LedgerRef(StrEnum):
    """What a ledger transaction is for (`EntryOut.ref_type`)."""

    task_order = "task_order"
    top_up = "top_up"
    dispute = "dispute"


class HoldStatus(StrEnum):
    """A hold's life: `held` until it ends exactly once (`TaskOrderOut.hold_status`)."""

    held = "held"
    paid = "paid"
    released = "released"
    partly_paid = "split"  # part to each (`split`)


class Wallet(Base):
    """One per account (plus the external funding wallet, `owner_id = "external"`, whose
    available balance is the negative of all money brought in). Sum of every wallet's
    available + frozen is always zero."""

    __tablename__ = "wallets"

    id: Mapped[str] = id_column("wal")
    owner_id: Mapped[str] = mapped_column(String(40), unique=True)
    available_fen: Mapped[int] = mapped_column(Money, default=0)
    frozen_fen: Mapped[int] = mapped_column(Money, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerTransaction(Base):
    """One money movement: its lines sum to zero."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (Index("ix_ledger_transactions_ref", "ref_type", "ref_id"),)

    id: Mapped[str] = id_column("ltx")
    kind: Mapped[str] = mapped_column(String(30))  # LedgerKind
    ref_type: Mapped[str | None] = mapped_column(String(30))
    ref_id: Mapped[str | None] = mapped_column(String(40))
    memo: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerLine(Base):
    __tablename__ = "ledger_lines"
    __table_args__ = (Index("ix_ledger_lines_owner", "owner_id", "id"),)

    id: Mapped[str] = id_column("lln")
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"))
    owner_id: Mapped[str] = mapped_column(String(40))
    bucket: Mapped[str] = mapped_column(String(20))  # Bucket
    amount_fen: Mapped[int] = mapped_column(Money)  # signed
    balance_after_fen: Mapped[int] = mapped_column(Money)  # of that bucket
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Hold(Base):
    """Money frozen in the payer's wallet for one reference (a task order). It ends exactly
    once: `paid` (all to the payee), `released` (all back), or `split`."""

    __tablename__ = "holds"

    id: Mapped[str] = id_column("hld")
    ref_id: Mapped[str] = mapped_column(String(40), unique=True)
    payer_id: Mapped[str] = mapped_column(String(40), index=True)
    payee_id: Mapped[str] = mapped_column(String(40), index=True)
    amount_fen: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20), default=HoldStatus.held)  # HoldStatus
    payee_fen: Mapped[int | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TopUp(Stateful, Base):
    __tablename__ = "top_ups"
    __table_args__ = (Index("ix_top_ups_account", "account_id", "id"),)

    id: Mapped[str] = id_column("tup")
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    amount_fen: Mapped[int] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(20))  # online | bank_transfer
    reference: Mapped[str | None] = mapped_column(String(100))
    gateway_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decision_note: Mapped[str | None] = mapped_column(String(500))


class TaskOrder(Stateful, Base):
    __tablename__ = "task_orders"
    __table_args__ = (
        Index("ix_task_orders_merchant", "merchant_id", "id"),
        Index("ix_task_orders_creator", "creator_id", "id"),
        Index("ix_task_orders_creator_start", "creator_id", "state", "expected_start_at"),
    )

    id: Mapped[str] = id_column("tko")
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    title: Mapped[str] = mapped_column(String(40))
    contact_name: Mapped[str] = mapped_column(String(40))
    contact_phone: Mapped[str] = mapped_column(String(20))
    expected_start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    return_samples: Mapped[bool] = mapped_column(Boolean)
    session_type: Mapped[str] = mapped_column(String(20))  # dedicated | shared
    hours: Mapped[int] = mapped_column(Integer)
    hourly_fen: Mapped[int] = mapped_column(Money)
    amount_fen: Mapped[int] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accept_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reminded_on: Mapped[str | None] = mapped_column(String(10))  # Asia/Shanghai date
    cancel_reason_code: Mapped[str | None] = mapped_column(String(40))
    cancel_reason_note: Mapped[str | None] = mapped_column(String(200))
    cancelled_by: Mapped[str | None] = mapped_column(String(20))
    compensation_fen: Mapped[int | None] = mapped_column(Money)
    compensation_rule: Mapped[str | None] = mapped_column(String(40))
    creator_received_fen: Mapped[int] = mapped_column(Money, default=0)


class TaskOrderProduct(Base):
    __tablename__ = "task_order_products"
    __table_args__ = (UniqueConstraint("task_order_id", "product_id"),)

    id: Mapped[str] = id_column("top")
    task_order_id: Mapped[str] = mapped_column(ForeignKey("task_orders.id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    plan: Mapped[str] = mapped_column(String(20))  # general | targeted
    commission_bp: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)


class TaskOrderLiveSession(Base):
    __tablename__ = "task_order_live_sessions"
    __table_args__ = (UniqueConstraint("task_order_id", "live_session_id"),)

    id: Mapped[str] = id_column("tls")
    task_order_id: Mapped[str] = mapped_column(ForeignKey("task_orders.id"), index=True)
    live_session_id: Mapped[str] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TargetedPlan(Base):
    """定向计划: created when the creator accepts, one per `targeted` product of the order."""

    __tablename__ = "targeted_plans"
    __table_args__ = (
        UniqueConstraint("task_order_id", "product_id"),
        Index("ix_targeted_plans_merchant", "merchant_id", "id"),
        Index("ix_targeted_plans_creator", "creator_id", "id"),
    )

    id: Mapped[str] = id_column("tpl")
    task_order_id: Mapped[str] = mapped_column(ForeignKey("task_orders.id"))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    creator_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    commission_bp: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Dispute(Stateful, Base):
    __tablename__ = "disputes"
    __table_args__ = (UniqueConstraint("task_order_id", "opened_by"),)

    id: Mapped[str] = id_column("dsp")
    task_order_id: Mapped[str] = mapped_column(ForeignKey("task_orders.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(String(40))
    creator_id: Mapped[str] = mapped_column(String(40))
    opened_by: Mapped[str] = mapped_column(String(40))
    opened_by_role: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500))
    creator_share_fen: Mapped[int | None] = mapped_column(Money)
    adjustment_fen: Mapped[int | None] = mapped_column(Money)  # + to the creator, - to the merchant
    resolution_note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
