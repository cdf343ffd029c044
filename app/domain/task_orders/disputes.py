"""Disputes over a completed task order and their resolution by an operator."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import msg
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.task_orders import Dispute
from app.db.repositories import entities
from app.db.repositories import task_orders as repo
from app.db.repositories.task_orders import (
    DisputeRecord,
    TaskOrderRecord,
)
from app.domain import wallet
from app.domain.notifications import message_rows
from app.domain.task_orders.schemas import (
    DisputeCreate,
    DisputeOut,
    DisputeResolve,
)
from app.domain.task_orders.views import _load
from app.state import clock
from app.state.core import Actor
from app.state.dispute import DISPUTE
from app.state.task_order import FINAL, TASK_ORDER

DISPUTE_WINDOW = timedelta(days=30)


def _dispute_out(row: DisputeRecord, order: TaskOrderRecord, actor: Actor, now: datetime) -> DisputeOut:
    return DisputeOut(
        id=row.id,
        task_order_id=row.task_order_id,
        state=row.state,
        version=row.version,
        allowed_actions=DISPUTE.allowed_actions(row, actor, now),
        opened_by=row.opened_by,
        opened_by_role=row.opened_by_role,
        reason=row.reason,
        amount_fen=order.amount_fen,
        creator_received_fen=order.creator_received_fen,
        creator_share_fen=row.creator_share_fen,
        adjustment_fen=row.adjustment_fen,
        resolution_note=row.resolution_note,
        created_at=row.created_at,
        closed_at=row.closed_at,
    )


async def open_dispute(session: AsyncSession, actor: Actor, order_id: str, body: DisputeCreate) -> DisputeOut:
    await _load(session, actor, order_id)  # visibility, and an overdue deadline fired first
    order = await repo.lock_order(session, order_id)  # one opening at a time per order
    assert order is not None
    if actor.id not in (order.merchant_id, order.creator_id):
        raise NotFound("no such task order")
    now = await clock.now(session)
    TASK_ORDER.expect_version(order, actor, now)  # If-Match names the order's version (412 before anything is written)
    if order.state not in FINAL or order.finished_at is None:
        raise Conflict(
            "a dispute is opened on an order that ended (completed or cancelled)", code="order_not_ended", state=order.state
        )
    if now - order.finished_at > DISPUTE_WINDOW:
        raise Conflict("disputes are opened within 30 days of the order's end", code="dispute_window_closed")
    existing = await repo.disputes_of(session, order.id)
    if any(d.state in ("open", "resolved") for d in existing) or any(d.opened_by == actor.id for d in existing):
        raise Conflict("this order already has a dispute (one per party; none after a resolution)", code="dispute_exists")
    other = order.creator_id if actor.id == order.merchant_id else order.merchant_id
    row, rows = DISPUTE.creation(
        {
            "id": id_for(Dispute),
            "task_order_id": order.id,
            "merchant_id": order.merchant_id,
            "creator_id": order.creator_id,
            "opened_by": actor.id,
            "opened_by_role": actor.role,
            "reason": body.reason,
            "creator_share_fen": None,
            "adjustment_fen": None,
            "resolution_note": None,
            "created_at": now,
            "closed_at": None,
        },
        actor,
        now,
        reason=body.reason,
        event_data={"task_order_id": order.id},
    )
    await insert_together(
        session,
        *rows,
        *message_rows(
            other,
            "dispute.created",
            "交易纠纷",
            f"任务「{order.title}」有新的纠纷：{body.reason}",
            {"dispute_id": row.id, "task_order_id": order.id},
            now,
        ),
    )
    return _dispute_out(row, order, actor, now)


async def _visible_dispute(session: AsyncSession, actor: Actor, dispute_id: str, *, lock: bool) -> DisputeRecord:
    row = await entities.entity(session, DISPUTE.table, DisputeRecord, dispute_id, lock=lock)
    if row is None or (actor.role != "operator" and actor.id not in (row.merchant_id, row.creator_id)):
        raise NotFound("no such dispute")
    return row


async def _order_of(session: AsyncSession, dispute: DisputeRecord, *, lock: bool = False) -> TaskOrderRecord:
    order = await (
        repo.lock_order(session, dispute.task_order_id)
        if lock
        else entities.entity(session, TASK_ORDER.table, TaskOrderRecord, dispute.task_order_id)
    )
    assert order is not None
    return order


async def get_dispute(session: AsyncSession, actor: Actor, dispute_id: str) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=False)
    return _dispute_out(row, await _order_of(session, row), actor, await clock.now(session))


async def resolve_dispute(session: AsyncSession, actor: Actor, dispute_id: str, body: DisputeResolve) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=True)
    order = await _order_of(session, row, lock=True)
    now = await clock.now(session)
    if body.creator_share_fen > order.amount_fen:
        raise ValidationFailed(
            msg("the creator's share is at most the order's amount ({amount_fen})", amount_fen=order.amount_fen),
            loc=["body", "creator_share_fen"],
        )
    diff = body.creator_share_fen - order.creator_received_fen
    row = await DISPUTE.fire(
        session,
        row,
        "resolve",
        actor,
        now=now,
        reason=body.note,
        event_data={"creator_share_fen": body.creator_share_fen},
        changes={
            "creator_share_fen": body.creator_share_fen,
            "adjustment_fen": diff,
            "resolution_note": body.note,
            "closed_at": now,
        },
        also=[
            part
            for party in (order.merchant_id, order.creator_id)
            for part in message_rows(
                party,
                "dispute.resolved",
                "纠纷已裁定",
                f"任务「{order.title}」纠纷裁定：达人分得 {body.creator_share_fen / 100:.2f} 元",
                {"dispute_id": row.id, "task_order_id": order.id},
                now,
            )
        ],
    )
    if diff:
        payer, payee = (order.merchant_id, order.creator_id) if diff > 0 else (order.creator_id, order.merchant_id)
        try:
            await wallet.transfer(
                session,
                payer,
                payee,
                abs(diff),
                kind=wallet.LedgerKind.dispute,
                ref_type=wallet.LedgerRef.dispute,
                ref_id=row.id,
                memo=f"纠纷裁定：达人最终分得 {body.creator_share_fen} 分",
            )
        except Conflict as exc:
            if exc.code == "insufficient_balance":
                raise Conflict(
                    "the paying side's available balance cannot cover the adjustment",
                    code="insufficient_balance",
                    required_fen=abs(diff),
                    available_fen=exc.extra.get("available_fen"),
                    payer_id=payer,
                ) from None
            raise
    order = await repo.set_creator_received(session, order, body.creator_share_fen)
    return _dispute_out(row, order, actor, now)


async def withdraw_dispute(session: AsyncSession, actor: Actor, dispute_id: str) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=True)
    order = await _order_of(session, row)
    now = await clock.now(session)
    row = await DISPUTE.fire(session, row, "withdraw", actor, now=now, changes={"closed_at": now})
    return _dispute_out(row, order, actor, now)
