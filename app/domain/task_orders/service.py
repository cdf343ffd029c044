"""Creating and reading task orders."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.i18n import msg, term
from app.db.base import id_for
from app.db.models.task_orders import TaskOrder, TaskOrderProduct
from app.db.repositories import task_orders as repo
from app.db.repositories.platform import TransitionRow
from app.db.repositories.task_orders import (
    OrderParts,
    ProductPart,
    order_products,
)
from app.domain import wallet
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.domain.task_orders.schemas import (
    Plan,
    SessionType,
    TaskOrderCreate,
    TaskOrderOut,
)
from app.domain.task_orders.views import BOOKING_HORIZON, REF, _detail, _load, _out
from app.state import clock
from app.state.core import Actor, history
from app.state.task_order import STATUS, TASK_ORDER
from app.state.timers import new_timer, page_as_of_now


async def create_order(session: AsyncSession, actor: Actor, body: TaskOrderCreate) -> TaskOrderOut:
    settings = get_settings()
    accounts, offset = await repo.parties(session, body.creator_id, actor.id, with_clock=clock.carries_offset())
    clock.remember(session, offset)
    now = await clock.now(session)
    if body.expected_start_at <= now:
        raise ValidationFailed("expected_start_at must be in the future", loc=["body", "expected_start_at"])
    if body.expected_start_at > now + BOOKING_HORIZON:
        raise ValidationFailed("expected_start_at is at most 365 days ahead", loc=["body", "expected_start_at"])
    creator = accounts.get(body.creator_id)
    if creator is None or creator.role != "creator":
        raise ValidationFailed("no such creator", loc=["body", "creator_id"])
    offered = await repo.offered_products(session, [p.product_id for p in body.products])
    order_id = id_for(TaskOrder)
    items: list[dict] = []
    parts = OrderParts([], creator.nickname, "held")
    for index, item in enumerate(body.products):
        loc: list[str | int] = ["body", "products", index]
        product = offered.get(item.product_id)
        if product is None or product.shop_id != actor.id:
            raise ValidationFailed("no such product in your shop", loc=[*loc, "product_id"])
        if product.status != "on_sale":
            raise ValidationFailed("the product is not on sale", loc=[*loc, "product_id"], code="product_off_sale")
        if item.plan is Plan.general:
            if product.general_commission_bp is None:
                raise ValidationFailed("the product is not in the general plan", loc=[*loc, "plan"])
            if item.commission_bp is not None and item.commission_bp != product.general_commission_bp:
                raise ValidationFailed(
                    msg(
                        "the general plan pays the product's rate, {commission_bp} bp",
                        commission_bp=product.general_commission_bp,
                    ),
                    loc=[*loc, "commission_bp"],
                )
            rate = product.general_commission_bp
        else:
            rate = int(item.commission_bp or 0)
        items.append(
            {
                "id": id_for(TaskOrderProduct),
                "task_order_id": order_id,
                "product_id": product.id,
                "plan": item.plan.value,
                "commission_bp": rate,
                "position": index,
            }
        )
        parts.products.append(ProductPart(product.id, product.title, item.plan.value, rate))
    merchant = accounts.get(actor.id)
    if merchant is None or not merchant.xingtu_account_id:
        raise Conflict("bind a Xingtu account first (POST /v1/xingtu-binding)", code="xingtu_not_bound")
    if not creator.accepting_orders:
        raise Conflict("the creator is resting (休息中) and takes no orders", code="creator_resting")
    hourly = creator.quote_dedicated_hourly_fen if body.session_type is SessionType.dedicated else creator.quote_shared_hourly_fen
    if hourly is None:
        raise Conflict(
            msg("the creator has no {session_type} quote", session_type=term(body.session_type.value)),
            code="creator_quote_missing",
        )
    amount = hourly * body.hours
    row, rows = TASK_ORDER.creation(
        {
            "id": order_id,
            "merchant_id": actor.id,
            "creator_id": creator.id,
            "title": body.title,
            "contact_name": body.contact_name,
            "contact_phone": body.contact_phone,
            "expected_start_at": body.expected_start_at,
            "return_samples": body.return_samples,
            "session_type": body.session_type.value,
            "hours": body.hours,
            "hourly_fen": hourly,
            "amount_fen": amount,
            "created_at": now,
            "accept_deadline": now + timedelta(hours=settings.accept_timeout_hours),
            "accepted_at": None,
            "review_deadline": None,
            "finished_at": None,
            "last_reminded_on": None,
            "cancel_reason_code": None,
            "cancel_reason_note": None,
            "cancelled_by": None,
            "compensation_fen": None,
            "compensation_rule": None,
            "creator_received_fen": 0,
        },
        actor,
        now,
        event_data={"amount_fen": amount, "creator_id": creator.id},
    )
    try:  # one statement on PostgreSQL: the wallet's conditional UPDATE, then everything behind it
        await wallet.freeze(
            session,
            actor.id,
            creator.id,
            amount,
            ref_type=REF,
            ref_id=row.id,
            memo=f"任务冻结 {row.title}",
            now=now,
            also=[
                *rows,
                (order_products, items),
                new_timer("task_order", row.id, "expire", row.accept_deadline),
                *message_rows(
                    creator.id,
                    "task_order.created",
                    "新的直播带货任务",
                    f"商家发来任务「{row.title}」，金额 {amount / 100:.2f} 元，请在 24 小时内处理",
                    {"task_order_id": row.id},
                    now,
                    sms_phone=creator.contact_phone,
                ),
            ],
        )
    except Conflict as exc:
        if exc.code == "insufficient_balance":
            raise Conflict(
                "the available balance is lower than the order amount; top up first",
                code="insufficient_balance",
                required_fen=amount,
                available_fen=exc.extra.get("available_fen"),
            ) from None
        raise
    # the answer is built from what this request holds: a new order has no live session yet
    return _out(row, actor, now, parts, live_sessions=[])


# =========================================================================== reading
_STATUS_STATES: dict[str, list[str]] = {}
for _state, (_status, _sub) in STATUS.items():
    _STATUS_STATES.setdefault(_status, []).append(_state)
_SUB_STATES = {sub: state for state, (_, sub) in STATUS.items() if sub}


def _require_lister(actor: Actor) -> None:
    if not repo.may_see_orders(actor.role):
        raise NotFound("task orders are for merchants, creators and operators")


async def list_orders(
    session: AsyncSession,
    actor: Actor,
    *,
    status: str | None,
    sub_status: str | None,
    q: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> PageOut[TaskOrderOut]:
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("a time zone is required (RFC 3339)", loc=["query", name])
    _require_lister(actor)
    states: list[str] | None = None
    if status:
        states = _STATUS_STATES[status]
    if sub_status:
        states = [s for s in (states or list(STATUS)) if s == _SUB_STATES[sub_status]]
    page = await page_as_of_now(
        session,
        "task_order",
        lambda: repo.orders_page(
            session,
            actor.role,
            actor.id,
            states=states,
            q=q,
            created_from=created_from,
            created_to=created_to,
            limit=limit,
            cursor=cursor,
        ),
    )
    parts = await repo.parts_of(session, [r.id for r in page.items])
    now = await clock.now(session)
    return PageOut[TaskOrderOut](items=[_out(r, actor, now, parts[r.id]) for r in page.items], next_cursor=page.next_cursor)


async def counts(session: AsyncSession, actor: Actor) -> dict[str, int]:
    _require_lister(actor)
    # as committed: the sweeper fires overdue orders within its interval (firing every overdue
    # order of the machine here would lock them all in the reader's transaction)
    rows = await repo.state_counts(session, actor.role, actor.id)
    result = {status: 0 for status in _STATUS_STATES}
    for state, n in rows:
        result[STATUS[state][0]] += n
    result["all"] = sum(n for _, n in rows)
    return result


async def get_order(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    return await _detail(session, row, parts, actor, now)


async def order_history(session: AsyncSession, actor: Actor, order_id: str) -> list[TransitionRow]:
    await _load(session, actor, order_id)
    return await history(session, "task_order", order_id)
