"""Live sessions linked to task orders (the live-session signals), their QR code, and targeted plans."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import NotFound
from app.db.base import id_for
from app.db.models.task_orders import TaskOrderLiveSession
from app.db.repositories import task_orders as repo
from app.db.repositories.task_orders import (
    order_live_sessions,
)
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.domain.task_orders.schemas import (
    TargetedPlanOut,
)
from app.domain.task_orders.views import BOOKING_HORIZON
from app.state import clock
from app.state.core import SYSTEM, Actor
from app.state.task_order import TASK_ORDER
from app.state.timers import schedule


async def on_live_session_started(session: AsyncSession, live_session: Any) -> None:
    settings = get_settings()
    before = timedelta(minutes=settings.link_window_before_minutes)
    after = timedelta(minutes=settings.link_window_after_minutes)
    # the window [expected - before, expected + after] contains started_at
    try:
        lowest, highest = live_session.started_at - after, live_session.started_at + before
    except OverflowError:  # a session at the edge of the calendar links nothing
        return
    ids = await repo.orders_to_link(session, live_session.host_id, lowest, highest)
    if not ids:
        return
    now = await clock.now(session)
    for order_id in ids:
        row = await TASK_ORDER.load_locked(session, order_id)
        if row.state != "waiting_live":
            continue
        await TASK_ORDER.fire(
            session,
            row,
            "start",
            SYSTEM,
            now=now,
            event_data={"live_session_id": live_session.id},
            also=[
                (
                    order_live_sessions,
                    [
                        {
                            "id": id_for(TaskOrderLiveSession),
                            "task_order_id": row.id,
                            "live_session_id": live_session.id,
                            "linked_at": now,
                        }
                    ],
                ),
                *message_rows(
                    row.merchant_id,
                    "task_order.started",
                    "达人开播了",
                    f"任务「{row.title}」的直播已开始",
                    {"task_order_id": row.id, "live_session_id": live_session.id},
                    now,
                ),
            ],
        )


async def on_live_session_ended(session: AsyncSession, live_session: Any) -> None:
    ids = await repo.live_orders_of_session(session, live_session.id)
    if not ids:
        return
    now = await clock.now(session)
    ended_at = min(live_session.ended_at or now, now + BOOKING_HORIZON)  # no overflow at the calendar's edge
    for order_id in ids:
        row = await TASK_ORDER.load_locked(session, order_id)
        if row.state != "live":
            continue
        deadline = ended_at + timedelta(days=get_settings().review_days)
        await TASK_ORDER.fire(
            session,
            row,
            "end",
            SYSTEM,
            now=now,
            event_data={"live_session_id": live_session.id},
            changes={"review_deadline": deadline},
            also=message_rows(
                row.merchant_id,
                "task_order.ended",
                "直播已结束，请验收",
                f"任务「{row.title}」的直播已结束，请在 {deadline.astimezone(clock.SHANGHAI):%m-%d %H:%M} 前验收，逾期自动确认",
                {"task_order_id": row.id},
                now,
            ),
        )
        await schedule(session, "task_order", row.id, "auto_approve", deadline)


async def live_session_qr(session: AsyncSession, actor: Actor, live_session_id: str) -> str:
    """The SVG QR code of a live session's room URL (观看直播). Visible to its host, operators,
    and the parties of a task order linked to it."""
    import io

    import segno

    room = await repo.room_of(session, live_session_id)
    if room is None:
        raise NotFound("no such live session")
    host_id, room_url = room
    if (
        actor.role != "operator"
        and actor.id != host_id
        and not await repo.is_party_of_session(session, live_session_id, actor.id)
    ):
        raise NotFound("no such live session")
    out = io.BytesIO()
    segno.make(room_url, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=True)
    return out.getvalue().decode()


async def list_targeted_plans(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> PageOut[TargetedPlanOut]:
    if actor.role not in ("merchant", "creator", "operator"):
        raise NotFound("targeted plans are for merchants, creators and operators")
    page = await repo.targeted_plans_page(session, actor.role, actor.id, limit=limit, cursor=cursor)
    return PageOut[TargetedPlanOut](
        items=[TargetedPlanOut.model_validate(r, from_attributes=True) for r in page.items], next_cursor=page.next_cursor
    )
