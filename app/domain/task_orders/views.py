"""A task order's representation, and loading an order the caller may see (firing its overdue timers first)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import links
from app.core.errors import NotFound
from app.db.models.task_orders import LedgerRef
from app.db.repositories import task_orders as repo
from app.db.repositories.task_orders import (
    OrderParts,
    TaskOrderRecord,
)
from app.domain.task_orders.schemas import (
    CancelReasonValue,
    LiveSessionInfo,
    OrderProductOut,
    Plan,
    SessionType,
    TaskOrderOut,
    WatchOut,
)
from app.state import clock
from app.state.core import Actor
from app.state.task_order import STATUS, TASK_ORDER
from app.state.timers import fire_due

REF = LedgerRef.task_order
BOOKING_HORIZON = timedelta(days=365)


def qr_svg_url(live_session_id: str, actor: Actor) -> str:
    """The session's QR picture as a signed link: it works in an `<img>` (no bearer token)."""
    return links.signed(f"/v1/live-sessions/{live_session_id}/qr.svg", actor.id, actor.role)


def _products_out(parts: OrderParts) -> list[OrderProductOut]:
    return [
        OrderProductOut(product_id=p.product_id, title=p.title, plan=Plan(p.plan), commission_bp=p.commission_bp)
        for p in parts.products
    ]


def _out(
    row: TaskOrderRecord, actor: Actor, now: datetime, parts: OrderParts, *, live_sessions: list[LiveSessionInfo] | None = None
) -> TaskOrderOut:
    status, sub_status = STATUS[row.state]
    return TaskOrderOut(
        id=row.id,
        state=row.state,
        version=row.version,
        allowed_actions=TASK_ORDER.allowed_actions(row, actor, now),
        status=status,
        sub_status=sub_status,
        title=row.title,
        merchant_id=row.merchant_id,
        creator_id=row.creator_id,
        creator_nickname=parts.creator_nickname,
        contact_name=row.contact_name,
        contact_phone=row.contact_phone,
        expected_start_at=row.expected_start_at,
        return_samples=row.return_samples,
        session_type=SessionType(row.session_type),
        hours=row.hours,
        hourly_fen=row.hourly_fen,
        amount_fen=row.amount_fen,
        products=_products_out(parts),
        created_at=row.created_at,
        accept_deadline=row.accept_deadline,
        accepted_at=row.accepted_at,
        review_deadline=row.review_deadline,
        finished_at=row.finished_at,
        cancelled_by=row.cancelled_by,
        cancel_reason=CancelReasonValue(code=row.cancel_reason_code, note=row.cancel_reason_note)
        if row.cancel_reason_code
        else None,
        compensation_fen=row.compensation_fen,
        compensation_rule=row.compensation_rule,
        creator_received_fen=row.creator_received_fen,
        hold_status=parts.hold_status,
        live_sessions=live_sessions,
    )


async def _detail(session: AsyncSession, row: TaskOrderRecord, parts: OrderParts, actor: Actor, now: datetime) -> TaskOrderOut:
    """The detail's answer: the order with its live sessions (with their GMV on the order's
    products) and the watch link."""
    sessions = await repo.linked_sessions(session, row.id)
    product_ids = [p.product_id for p in parts.products]
    gmv = (
        await repo.gmv_by_session(session, [s.id for s in sessions], product_ids, row.merchant_id)
        if sessions and product_ids
        else {}
    )
    out = _out(
        row,
        actor,
        now,
        parts,
        live_sessions=[
            LiveSessionInfo(
                id=s.id,
                started_at=s.started_at,
                ended_at=s.ended_at,
                peak_viewers=s.peak_viewers,
                room_url=s.room_url,
                gmv_fen=gmv.get(s.id, 0),
            )
            for s in sessions
        ],
    )
    if sessions:
        latest = sessions[-1]
        out.watch = WatchOut(room_url=latest.room_url, qr_svg_url=qr_svg_url(latest.id, actor))
    return out


# =========================================================================== loading
def _visible(row: TaskOrderRecord, actor: Actor) -> bool:
    return actor.role == "operator" or actor.id in (row.merchant_id, row.creator_id)


def _overdue(row: TaskOrderRecord, now: datetime) -> bool:
    """Whether one of the order's deadline timers has fallen due: `expire` at `accept_deadline`
    while pending acceptance, `auto_approve` at `review_deadline` while pending review."""
    deadline = (
        row.accept_deadline
        if row.state == "pending_acceptance"
        else row.review_deadline
        if row.state == "pending_review"
        else None
    )
    return deadline is not None and deadline <= now


async def _load(session: AsyncSession, actor: Actor, order_id: str) -> tuple[TaskOrderRecord, OrderParts, datetime]:
    """The order as of now, with its parts and business time, in one statement: an overdue
    deadline is fired first, as the sweeper would have (the timer query only runs when the row
    says a deadline has passed). No lock: a transition's conditional UPDATE sees whether the
    order moved since."""
    found = await repo.order_with_parts(session, order_id, with_clock=clock.carries_offset())
    if found is None or not _visible(found[0], actor):
        raise NotFound("no such task order")
    row, parts, offset = found
    clock.remember(session, offset)
    now = await clock.now(session)
    if _overdue(row, now):
        await fire_due(session, entity_id=order_id)
        found = await repo.order_with_parts(session, order_id, with_clock=False)
        assert found is not None
        row, parts, _ = found
    return row, parts, now
