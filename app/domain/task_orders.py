"""Rules and services of the task orders module (直播带货任务 / 坑位费): Xingtu binding, the
creator square, task orders with escrow, live-session linking, compensation, disputes."""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.task_orders import Dispute, TargetedPlan, TaskOrder, TaskOrderLiveSession, TaskOrderProduct
from app.db.repositories import entities
from app.db.repositories import task_orders as repo
from app.db.repositories.platform import TransitionRow
from app.db.repositories.task_orders import (
    DisputeRecord,
    OrderParts,
    ProductPart,
    TaskOrderRecord,
    order_live_sessions,
    order_products,
    targeted_plans,
)
from app.domain import wallet
from app.domain.notifications import message_rows
from app.domain.schemas import Strict
from app.state import clock
from app.state.core import SYSTEM, Actor, history
from app.state.dispute import DISPUTE
from app.state.task_order import FINAL, STATUS, TASK_ORDER
from app.state.timers import fire_due, new_timer, on_timer, schedule

REF = "task_order"
BOOKING_HORIZON = timedelta(days=365)


# =========================================================================== Xingtu binding
class XingtuBindingIn(Strict):
    xingtu_account_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="bind this existing account; omit to register a new one",
    )


class XingtuBindingOut(BaseModel):
    merchant_id: str
    xingtu_account_id: str
    registered: bool = Field(description="true when a new Xingtu account was registered for the merchant")


async def bind_xingtu(session: AsyncSession, actor: Actor, body: XingtuBindingIn) -> XingtuBindingOut:
    exists, bound = await repo.lock_xingtu_binding(session, actor.id)
    if not exists:
        raise NotFound("no such account")
    if body.xingtu_account_id is None:
        if bound:  # already bound: registering again would orphan it
            return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=bound, registered=False)
        registered = f"xt{secrets.randbelow(10**12):012d}"
        await repo.bind_xingtu(session, actor.id, registered)
        return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=registered, registered=True)
    if await repo.xingtu_taken_by_other(session, body.xingtu_account_id, actor.id):
        raise Conflict("this Xingtu account is bound to another merchant", code="xingtu_account_taken")
    await repo.bind_xingtu(session, actor.id, body.xingtu_account_id)
    return XingtuBindingOut(merchant_id=actor.id, xingtu_account_id=body.xingtu_account_id, registered=False)


# =========================================================================== creator square
class CreatorCard(BaseModel):
    id: str
    display_name: str
    nickname: str | None
    level: int | None
    followers: int | None
    accepting_orders: bool
    quotes: dict[str, int | None]


async def list_creators(
    session: AsyncSession, *, accepting_orders: bool | None, q: str | None, level_min: int | None, limit: int, cursor: str | None
) -> tuple[list[CreatorCard], str | None]:
    page = await repo.creators_page(
        session, accepting_orders=accepting_orders, q=q, level_min=level_min, limit=limit, cursor=cursor
    )
    return [
        CreatorCard(
            id=a.id,
            display_name=a.display_name,
            nickname=a.nickname,
            level=a.level,
            followers=a.followers,
            accepting_orders=bool(a.accepting_orders),
            quotes={"dedicated_hourly_fen": a.quote_dedicated_hourly_fen, "shared_hourly_fen": a.quote_shared_hourly_fen},
        )
        for a in page.items
    ], page.next_cursor


# =========================================================================== creation input
def _check_title(value: str) -> str:
    """汉字、字母、数字、标点: Unicode letters (L*), decimal digits (Nd), punctuation (P*), and a
    space between words. No emoji or other symbols, no control characters."""
    if not 1 <= len(value) <= 20:
        raise ValueError("the title has 1 to 20 characters")
    if value != value.strip():
        raise ValueError("the title may not start or end with a space")
    for char in value:
        category = unicodedata.category(char)
        if char in (" ", "\u3000") or category[0] in ("L", "P") or category == "Nd":
            continue
        raise ValueError(f"the title may only hold Chinese characters, letters, digits and punctuation (not {char!r})")
    return value


def _check_contact_name(value: str) -> str:
    if not value.strip():
        raise ValueError("the contact name is empty")
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise ValueError("the contact name holds control characters")
    return value


def _minute_in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time zone is required (RFC 3339)")
    if value.second or value.microsecond:
        raise ValueError("expected_start_at is to the minute (seconds must be zero)")
    return value


class SessionType(StrEnum):
    dedicated = "dedicated"
    shared = "shared"


class Plan(StrEnum):
    general = "general"
    targeted = "targeted"


class OrderProductIn(Strict):
    product_id: str = Field(min_length=1, max_length=40)
    plan: Plan
    commission_bp: int | None = Field(
        default=None, ge=0, le=10000, description="targeted: 0–8000, required; general: the product's rate (may be omitted)"
    )

    @model_validator(mode="after")
    def _rate(self) -> OrderProductIn:
        if self.plan is Plan.targeted:
            if self.commission_bp is None:
                raise ValueError("a targeted product needs commission_bp")
            if self.commission_bp > 8000:
                raise ValueError("a targeted rate is 0–8000 bp")
        return self


class TaskOrderCreate(Strict):
    title: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_check_title)]
    contact_name: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_check_contact_name)]
    contact_phone: str = Field(pattern=r"^1[3-9]\d{9}$", description="mainland mobile number")
    expected_start_at: Annotated[datetime, AfterValidator(_minute_in_utc)]
    return_samples: bool
    session_type: SessionType
    hours: int = Field(ge=1, le=24)
    creator_id: str = Field(min_length=1, max_length=40)
    products: list[OrderProductIn] = Field(min_length=1, max_length=20)

    @field_validator("products")
    @classmethod
    def _unique(cls, products: list[OrderProductIn]) -> list[OrderProductIn]:
        if len({p.product_id for p in products}) != len(products):
            raise ValueError("a product appears twice")
        return products


class CancelReason(Strict):
    code: str = Field(min_length=1, max_length=40)
    note: str | None = Field(default=None, max_length=200)


class CancelIn(Strict):
    reason: CancelReason


class TaskOrderRejectIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class CancelReasonOut(BaseModel):
    code: str
    label: str
    parties: list[str]


CANCEL_REASONS: list[CancelReasonOut] = [
    CancelReasonOut(code="schedule_changed", label="档期变动", parties=["merchant", "creator"]),
    CancelReasonOut(code="product_issue", label="商品问题（库存、价格、资质）", parties=["merchant"]),
    CancelReasonOut(code="budget_changed", label="预算调整", parties=["merchant"]),
    CancelReasonOut(code="creator_unresponsive", label="达人联系不上", parties=["merchant"]),
    CancelReasonOut(code="merchant_unresponsive", label="商家联系不上", parties=["creator"]),
    CancelReasonOut(code="product_unsuitable", label="商品不适合直播间", parties=["creator"]),
    CancelReasonOut(code="samples_not_received", label="未收到样品", parties=["creator"]),
    CancelReasonOut(code="health", label="身体原因", parties=["creator"]),
    CancelReasonOut(code="other", label="其他（请填写说明）", parties=["merchant", "creator"]),
]
_REASONS = {r.code: r for r in CANCEL_REASONS}


# =========================================================================== representation
class OrderProductOut(BaseModel):
    product_id: str
    title: str | None
    plan: Plan
    commission_bp: int


class LiveSessionInfo(BaseModel):
    id: str
    started_at: datetime
    ended_at: datetime | None
    peak_viewers: int
    room_url: str
    gmv_fen: int = Field(description="paid minus refunded amount of this order's products in the session")


class WatchOut(BaseModel):
    room_url: str
    qr_svg_url: str


class CancelReasonValue(BaseModel):
    code: str
    note: str | None


class TaskOrderOut(BaseModel):
    id: str
    state: str
    version: int
    allowed_actions: list[str]
    status: str
    sub_status: str | None
    title: str
    merchant_id: str
    creator_id: str
    creator_nickname: str | None
    contact_name: str
    contact_phone: str
    expected_start_at: datetime
    return_samples: bool
    session_type: SessionType
    hours: int
    hourly_fen: int
    amount_fen: int
    products: list[OrderProductOut]
    created_at: datetime
    accept_deadline: datetime
    accepted_at: datetime | None
    review_deadline: datetime | None
    finished_at: datetime | None
    cancelled_by: str | None
    cancel_reason: CancelReasonValue | None
    compensation_fen: int | None
    compensation_rule: str | None
    creator_received_fen: int = Field(description="what the creator has been paid for this order so far")
    hold_status: str | None = Field(description="held | paid | released | split")
    live_sessions: list[LiveSessionInfo] | None = Field(default=None, description="detail only")
    watch: WatchOut | None = None


def qr_svg_url(live_session_id: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/v1/live-sessions/{live_session_id}/qr.svg"


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
        out.watch = WatchOut(room_url=latest.room_url, qr_svg_url=qr_svg_url(latest.id))
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


# =========================================================================== creation
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
                    f"the general plan pays the product's rate, {product.general_commission_bp} bp", loc=[*loc, "commission_bp"]
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
        raise Conflict(f"the creator has no {body.session_type.value} quote", code="creator_quote_missing")
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
) -> tuple[list[TaskOrderOut], str | None]:
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("a time zone is required (RFC 3339)", loc=["query", name])
    _require_lister(actor)
    await fire_due(session, machines=["task_order"])
    states: list[str] | None = None
    if status:
        states = _STATUS_STATES[status]
    if sub_status:
        states = [s for s in (states or list(STATUS)) if s == _SUB_STATES[sub_status]]
    page = await repo.orders_page(
        session,
        actor.role,
        actor.id,
        states=states,
        q=q,
        created_from=created_from,
        created_to=created_to,
        limit=limit,
        cursor=cursor,
    )
    parts = await repo.parts_of(session, [r.id for r in page.items])
    now = await clock.now(session)
    return [_out(r, actor, now, parts[r.id]) for r in page.items], page.next_cursor


async def counts(session: AsyncSession, actor: Actor) -> dict[str, int]:
    _require_lister(actor)
    await fire_due(session, machines=["task_order"])
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


# =========================================================================== actions
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
        changes=_ended(now, 0, compensation_fen=0, compensation_rule="creator_rejected"),
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
    today = clock.local_date(now).isoformat()
    if TASK_ORDER.can(row, "remind", actor, now) and row.last_reminded_on == today:
        raise TooManyRequests(
            "the creator was already reminded today (once per day, Asia/Shanghai)",
            retry_after=int((clock.next_local_midnight(now) - now).total_seconds()) + 1,
        )
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


def compensation(row: TaskOrderRecord, now: datetime, linked: bool) -> tuple[int, str]:
    """What the creator gets when the merchant cancels now: (fen, rule). The rules are tried in
    order; see docs/task-orders.md."""
    settings = get_settings()
    if row.state == "pending_acceptance" or row.accepted_at is None:
        return 0, "not_accepted"
    window_end = row.expected_start_at + timedelta(minutes=settings.link_window_after_minutes)
    if not linked and now > window_end:
        return 0, "creator_no_show"
    if now >= clock.local_midnight(clock.local_date(row.expected_start_at)):
        return row.amount_fen, "execution_day"
    if now < row.accepted_at + timedelta(hours=72):
        return 0, "within_72h_of_acceptance"
    return row.amount_fen * settings.cancel_compensation_bp // 10000, "default_rate"


async def cancel(session: AsyncSession, actor: Actor, order_id: str, body: CancelIn) -> TaskOrderOut:
    row, parts, now = await _load(session, actor, order_id)
    if actor.role not in TASK_ORDER.roles_of("cancel"):
        raise Forbidden(f"a {actor.role} may not cancel a task order")
    reason = _REASONS.get(body.reason.code)
    if reason is None or actor.role not in reason.parties:
        raise ValidationFailed("unknown cancel reason (GET /v1/task-orders/cancel-reasons)", loc=["body", "reason", "code"])
    if reason.code == "other" and not (body.reason.note or "").strip():
        raise ValidationFailed("say why in the note", loc=["body", "reason", "note"])
    if actor.role == "merchant":
        fen, rule_name = compensation(row, now, await repo.has_linked_session(session, row.id))
        other, who = row.creator_id, "商家"
    else:
        fen, rule_name = 0, "creator_cancelled"
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
async def _expire(session: AsyncSession, row: TaskOrderRecord, now: datetime) -> None:
    row = await TASK_ORDER.fire(
        session,
        row,
        "expire",
        SYSTEM,
        now=now,
        changes=_ended(now, 0, compensation_fen=0, compensation_rule="creator_timeout"),
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
async def _auto_approve(session: AsyncSession, row: TaskOrderRecord, now: datetime) -> None:
    await _complete(session, row, OrderParts([]), "auto_approve", SYSTEM, now, "验收期满自动确认，支付达人")


# =========================================================================== live sessions
async def _on_live_started(session: AsyncSession, live_session: Any) -> None:
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


async def _on_live_ended(session: AsyncSession, live_session: Any) -> None:
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


# =========================================================================== targeted plans
class TargetedPlanOut(BaseModel):
    id: str
    task_order_id: str
    merchant_id: str
    creator_id: str
    product_id: str
    product_title: str | None
    commission_bp: int
    created_at: datetime


async def list_targeted_plans(
    session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None
) -> tuple[list[TargetedPlanOut], str | None]:
    if actor.role not in ("merchant", "creator", "operator"):
        raise NotFound("targeted plans are for merchants, creators and operators")
    page = await repo.targeted_plans_page(session, actor.role, actor.id, limit=limit, cursor=cursor)
    return [TargetedPlanOut.model_validate(r, from_attributes=True) for r in page.items], page.next_cursor


# =========================================================================== disputes
DISPUTE_WINDOW = timedelta(days=30)


class DisputeCreate(Strict):
    reason: str = Field(min_length=1, max_length=500)


class DisputeResolve(Strict):
    creator_share_fen: int = Field(ge=0, le=10**13, description="the creator's final share of amount_fen")
    note: str | None = Field(default=None, max_length=500)


class DisputeOut(BaseModel):
    id: str
    task_order_id: str
    state: str
    version: int
    allowed_actions: list[str]
    opened_by: str
    opened_by_role: str
    reason: str
    amount_fen: int
    creator_received_fen: int = Field(description="what the creator has been paid for the order so far")
    creator_share_fen: int | None
    adjustment_fen: int | None = Field(description="posted at resolution: + merchant→creator, - creator→merchant")
    resolution_note: str | None
    created_at: datetime
    closed_at: datetime | None


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
            f"the creator's share is at most the order's amount ({order.amount_fen})", loc=["body", "creator_share_fen"]
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
                kind="dispute",
                ref_type="dispute",
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
