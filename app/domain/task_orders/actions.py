"""The transitions of a task order (accept, reject, remind, approve, cancel) and its timers, with their money."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Forbidden, ValidationFailed
from app.core.i18n import msg, term
from app.db.base import id_for
from app.db.models.task_orders import TargetedPlan
from app.db.repositories import task_orders as repo
from app.db.repositories.task_orders import (
    OrderParts,
    TaskOrderRecord,
    targeted_plans,
)
from app.domain import wallet
from app.domain.notifications import message_rows
from app.domain.task_orders.schemas import (
    _REASONS,
    CancelIn,
    CompensationRule,
    Plan,
    TaskOrderOut,
    TaskOrderRejectIn,
)
from app.domain.task_orders.views import REF, _detail, _load, _out
from app.state import clock
from app.state.core import SYSTEM, Actor
from app.state.task_order import TASK_ORDER
from app.state.timers import on_timer


async def _settle(session: AsyncSession, row: TaskOrderRecord, parts: OrderParts, creator_fen: int, memo: str) -> OrderParts:
    hold = await wallet.split(session, row.id, creator_fen, ref_type=REF, memo=memo)
    return replace(parts, hold_status=hold.status)


def _ended(now: datetime, creator_fen: int, **changes: object) -> dict[str, object]:
    """The columns an ending transition writes with its state."""
    return {"finished_at": now, "creator_received_fen": creator_fen, **changes}


async def accept(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    plans = [
        {
            "id": id_for(TargetedPlan),
            "task_order_id": row.id,
            "merchant_id": row.merchant_id,
            "creator_id": row.creator_id,
            "product_id": p.product_id,
            "commission_bp": p.commission_bp,
            "created_at": now,
        }
        for p in parts.products
        if p.plan == Plan.targeted.value
    ]
    row = await TASK_ORDER.fire(
        session,
        row,
        "accept",
        actor,
        now=now,
        changes={"accepted_at": now},
        also=[
            (targeted_plans, plans),
            *message_rows(
                row.merchant_id,
                "task_order.accepted",
                "达人已接单",
                f"任务「{row.title}」已被达人接受",
                {"task_order_id": row.id},
                now,
            ),
        ],
    )
    return _out(row, actor, now, parts, live_sessions=[])  # live sessions link to accepted orders only


async def reject(session: AsyncSession, actor: Actor, order_id: str, body: TaskOrderRejectIn | None) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    row = await TASK_ORDER.fire(
        session,
        row,
        "reject",
        actor,
        now=now,
        reason=body.reason if body else None,
        changes=_ended(now, 0, compensation_fen=0, compensation_rule=CompensationRule.creator_rejected),
        also=message_rows(
            row.merchant_id,
            "task_order.rejected",
            "达人拒绝了任务",
            f"任务「{row.title}」被达人拒绝，冻结金额已退回",
            {"task_order_id": row.id},
            now,
        ),
    )
    parts = await _settle(session, row, parts, 0, "达人拒绝任务，解冻")
    return await _detail(session, row, parts, actor, now)


async def remind(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    today = clock.local_date(now).isoformat()  # once a day: the machine's guard refuses a second
    creator = (await repo.parties(session, row.creator_id, row.creator_id, with_clock=False))[0].get(row.creator_id)
    row = await TASK_ORDER.fire(
        session,
        row,
        "remind",
        actor,
        now=now,
        changes={"last_reminded_on": today},
        also=message_rows(
            row.creator_id,
            "task_order.reminded",
            "商家提醒您接单",
            f"任务「{row.title}」等待您处理，截止 {row.accept_deadline.astimezone(clock.SHANGHAI):%m-%d %H:%M}",
            {"task_order_id": row.id},
            now,
            sms_phone=creator.contact_phone if creator else None,
        ),
    )
    return await _detail(session, row, parts, actor, now)


async def approve(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    row, parts = await _complete(session, row, parts, "approve", actor, now, "商家验收通过，支付达人")
    return await _detail(session, row, parts, actor, now)


async def _complete(
    session: AsyncSession, row: TaskOrderRecord, parts: OrderParts, action: str, actor: Actor, now: datetime, memo: str
) -> tuple[TaskOrderRecord, OrderParts]:
    row = await TASK_ORDER.fire(
        session,
        row,
        action,
        actor,
        now=now,
        changes=_ended(now, row.amount_fen),
        also=message_rows(
            row.creator_id,
            "task_order.completed",
            "任务已完成",
            f"任务「{row.title}」已验收，{row.amount_fen / 100:.2f} 元已到账",
            {"task_order_id": row.id},
            now,
        ),
    )
    return row, await _settle(session, row, parts, row.amount_fen, memo)


def compensation(row: TaskOrderRecord, now: datetime, linked: bool) -> tuple[int, CompensationRule]:
    """What the creator gets when the merchant cancels now: (fen, rule). The rules are tried in
    order; see docs/task-orders.md."""
    settings = get_settings()
    if row.state == "pending_acceptance" or row.accepted_at is None:
        return 0, CompensationRule.not_accepted
    window_end = row.expected_start_at + timedelta(minutes=settings.link_window_after_minutes)
    if not linked and now > window_end:
        return 0, CompensationRule.creator_no_show
    if now >= clock.local_midnight(clock.local_date(row.expected_start_at)):
        return row.amount_fen, CompensationRule.execution_day
    if now < row.accepted_at + timedelta(hours=72):
        return 0, CompensationRule.within_72h_of_acceptance
    return row.amount_fen * settings.cancel_compensation_bp // 10000, CompensationRule.default_rate


async def cancel(session: AsyncSession, actor: Actor, order_id: str, body: CancelIn) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    if actor.role not in TASK_ORDER.roles_of("cancel"):
        raise Forbidden(msg("a {role} may not cancel a task order", role=term(actor.role)))
    reason = _REASONS.get(body.reason.code)
    if reason is None or actor.role not in reason.parties:
        raise ValidationFailed("unknown cancel reason (GET /v1/task-orders/cancel-reasons)", loc=["body", "reason", "code"])
    if reason.code == "other" and not (body.reason.note or "").strip():
        raise ValidationFailed("say why in the note", loc=["body", "reason", "note"])
    if actor.role == "merchant":
        fen, rule_name = compensation(row, now, await repo.has_linked_session(session, row.id))
        other, who = row.creator_id, "商家"
    else:
        fen, rule_name = 0, CompensationRule.creator_cancelled
        other, who = row.merchant_id, "达人"
    row = await TASK_ORDER.fire(
        session,
        row,
        "cancel",
        actor,
        now=now,
        reason=body.reason.model_dump(),
        changes=_ended(
            now,
            fen,
            cancelled_by=actor.role,
            cancel_reason_code=body.reason.code,
            cancel_reason_note=body.reason.note,
            compensation_fen=fen,
            compensation_rule=rule_name,
        ),
        also=message_rows(
            other,
            "task_order.cancelled",
            "任务已取消",
            f"任务「{row.title}」已被{who}取消：{reason.label}",
            {"task_order_id": row.id, "compensation_fen": fen},
            now,
        ),
    )
    parts = await _settle(session, row, parts, fen, f"取消任务，赔付 {fen} 分（{rule_name}）")
    return await _detail(session, row, parts, actor, now)


@on_timer("task_order", "expire")
async def expire_on_timer(session: AsyncSession, row: TaskOrderRecord, now: datetime) -> None:
    row = await TASK_ORDER.fire(
        session,
        row,
        "expire",
        SYSTEM,
        now=now,
        changes=_ended(now, 0, compensation_fen=0, compensation_rule=CompensationRule.creator_timeout),
        also=message_rows(
            row.merchant_id,
            "task_order.expired",
            "任务已超时",
            f"达人 24 小时内未处理任务「{row.title}」，冻结金额已退回",
            {"task_order_id": row.id},
            now,
        ),
    )
    await wallet.split(session, row.id, 0, ref_type=REF, memo="达人超时未接单，解冻")


@on_timer("task_order", "auto_approve")
async def auto_approve_on_timer(session: AsyncSession, row: TaskOrderRecord, now: datetime) -> None:
    await _complete(session, row, OrderParts([]), "auto_approve", SYSTEM, now, "验收期满自动确认，支付达人")
