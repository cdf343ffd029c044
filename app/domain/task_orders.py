"""Rules and services of the task orders module (直播带货任务 / 坑位费): Xingtu binding, the
creator square, task orders with escrow, live-session linking, compensation, disputes."""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.db.base import id_for
from app.db.models.accounts import Account, Product
from app.db.models.facts import LiveSession, SalesOrder
from app.db.models.task_orders import (
    Dispute,
    TargetedPlan,
    TaskOrder,
    TaskOrderLiveSession,
    TaskOrderProduct,
    TopUp,
)
from app.db.pagination import keyset_page
from app.domain import clock, wallet
from app.domain.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from app.domain.notifications import message_rows, notify, notify_with_sms
from app.domain.schemas import Strict
from app.domain.signals import live_session_ended, live_session_started
from app.state.core import SYSTEM, Actor
from app.state.dispute import DISPUTE
from app.state.task_order import FINAL, STATUS, TASK_ORDER
from app.state.timers import fire_due, new_timer, on_timer, schedule

REF = "task_order"
BOOKING_HORIZON = timedelta(days=365)


# =========================================================================== Xingtu binding
class XingtuBindingIn(Strict):
    xingtu_account_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                          description="bind this existing account; omit to register a new one")


class XingtuBindingOut(BaseModel):
    merchant_id: str
    xingtu_account_id: str
    registered: bool = Field(description="true when a new Xingtu account was registered for the merchant")


async def bind_xingtu(session: AsyncSession, actor: Actor, body: XingtuBindingIn) -> XingtuBindingOut:
    account = await session.scalar(select(Account).where(Account.id == actor.id).with_for_update())
    if account is None:
        raise NotFound("no such account")
    if body.xingtu_account_id is None:
        if account.xingtu_account_id:  # already bound: registering again would orphan it
            return XingtuBindingOut(merchant_id=account.id, xingtu_account_id=account.xingtu_account_id,
                                    registered=False)
        account.xingtu_account_id = f"xt{secrets.randbelow(10**12):012d}"
        await session.flush()
        return XingtuBindingOut(merchant_id=account.id, xingtu_account_id=account.xingtu_account_id, registered=True)
    taken = await session.scalar(select(Account.id).where(Account.xingtu_account_id == body.xingtu_account_id,
                                                          Account.id != account.id))
    if taken:
        raise Conflict("this Xingtu account is bound to another merchant", code="xingtu_account_taken")
    account.xingtu_account_id = body.xingtu_account_id
    await session.flush()
    return XingtuBindingOut(merchant_id=account.id, xingtu_account_id=account.xingtu_account_id, registered=False)


# =========================================================================== creator square
class CreatorCard(BaseModel):
    id: str
    display_name: str
    nickname: str | None
    level: int | None
    followers: int | None
    accepting_orders: bool
    quotes: dict[str, int | None]


async def list_creators(session: AsyncSession, *, accepting_orders: bool | None, q: str | None,
                        level_min: int | None, limit: int, cursor: str | None) -> tuple[list[CreatorCard], str | None]:
    query = select(Account).where(Account.role == "creator")
    if accepting_orders is not None:
        query = query.where(Account.accepting_orders.is_(accepting_orders))
    if level_min is not None:
        query = query.where(Account.level >= level_min)
    if q:
        query = query.where(or_(Account.nickname.contains(q, autoescape=True),
                                Account.display_name.contains(q, autoescape=True)))
    rows, next_cursor = await keyset_page(session, query, Account.id, limit=limit, cursor=cursor)
    return [CreatorCard(id=a.id, display_name=a.display_name, nickname=a.nickname, level=a.level,
                        followers=a.followers, accepting_orders=bool(a.accepting_orders),
                        quotes={"dedicated_hourly_fen": a.quote_dedicated_hourly_fen,
                                "shared_hourly_fen": a.quote_shared_hourly_fen})
            for a in rows], next_cursor


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
        raise ValueError(f"the title may only hold Chinese characters, letters, digits and punctuation "
                         f"(not {char!r})")
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
    commission_bp: int | None = Field(default=None, ge=0, le=10000,
                                      description="targeted: 0–8000, required; general: the product's rate "
                                                  "(may be omitted)")

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


@dataclass
class _Parts:
    """What an order's answer shows beyond its own row."""

    products: list[OrderProductOut] = dc_field(default_factory=list)
    nickname: str | None = None
    hold_status: str | None = None


# The hot path's statements are built once (SQLAlchemy then only looks up their compiled form).
_PARTS = (select(TaskOrderProduct.task_order_id, TaskOrderProduct.product_id, TaskOrderProduct.plan,
                 TaskOrderProduct.commission_bp, Product.title, Account.nickname, wallet.Hold.status)
          .join(Product, Product.id == TaskOrderProduct.product_id)
          .join(TaskOrder, TaskOrder.id == TaskOrderProduct.task_order_id)
          .join(Account, Account.id == TaskOrder.creator_id)
          .outerjoin(wallet.Hold, wallet.Hold.ref_id == TaskOrderProduct.task_order_id)
          .where(TaskOrderProduct.task_order_id.in_(bindparam("ids", expanding=True)))
          .order_by(TaskOrderProduct.task_order_id, TaskOrderProduct.position))
_ORDER_FOR_UPDATE = (select(TaskOrder).where(TaskOrder.id == bindparam("id")).with_for_update()
                     .execution_options(populate_existing=True))
_ACCOUNTS = select(Account).where(Account.id.in_(bindparam("ids", expanding=True)))
_PRODUCTS = select(Product).where(Product.id.in_(bindparam("ids", expanding=True)))


async def _parts_of(session: AsyncSession, order_ids: list[str]) -> dict[str, _Parts]:
    """Products (with titles), the creator's nickname and the hold's status of orders, in one
    query: every order has at least one product, each order has one creator and one hold."""
    result = {i: _Parts() for i in order_ids}
    if not order_ids:
        return result
    rows = await session.execute(_PARTS, {"ids": order_ids})
    for order_id, product_id, plan, commission_bp, title, nickname, hold_status in rows:
        parts = result[order_id]
        parts.products.append(OrderProductOut(product_id=product_id, title=title, plan=Plan(plan),
                                              commission_bp=commission_bp))
        parts.nickname, parts.hold_status = nickname, hold_status
    return result


def _out(row: TaskOrder, actor: Actor, now: datetime, *, products: list[OrderProductOut], nickname: str | None,
         hold_status: str | None) -> TaskOrderOut:
    status, sub_status = STATUS[row.state]
    return TaskOrderOut(
        id=row.id, state=row.state, version=row.version,
        allowed_actions=TASK_ORDER.allowed_actions(row, actor, now), status=status, sub_status=sub_status,
        title=row.title, merchant_id=row.merchant_id, creator_id=row.creator_id,
        creator_nickname=nickname, contact_name=row.contact_name,
        contact_phone=row.contact_phone, expected_start_at=row.expected_start_at,
        return_samples=row.return_samples, session_type=SessionType(row.session_type), hours=row.hours,
        hourly_fen=row.hourly_fen, amount_fen=row.amount_fen, products=products,
        created_at=row.created_at, accept_deadline=row.accept_deadline, accepted_at=row.accepted_at,
        review_deadline=row.review_deadline, finished_at=row.finished_at, cancelled_by=row.cancelled_by,
        cancel_reason=CancelReasonValue(code=row.cancel_reason_code, note=row.cancel_reason_note)
        if row.cancel_reason_code else None,
        compensation_fen=row.compensation_fen, compensation_rule=row.compensation_rule,
        creator_received_fen=row.creator_received_fen, hold_status=hold_status)


async def _outs(session: AsyncSession, rows: list[TaskOrder], actor: Actor, now: datetime) -> list[TaskOrderOut]:
    parts = await _parts_of(session, [r.id for r in rows])
    return [_out(row, actor, now, products=parts[row.id].products, nickname=parts[row.id].nickname,
                 hold_status=parts[row.id].hold_status) for row in rows]


def qr_svg_url(live_session_id: str) -> str:
    return f"{get_settings().public_base_url.rstrip('/')}/v1/live-sessions/{live_session_id}/qr.svg"


async def _detail(session: AsyncSession, row: TaskOrder, actor: Actor, now: datetime) -> TaskOrderOut:
    out = (await _outs(session, [row], actor, now))[0]
    return await _with_live_data(session, row, out)


async def _with_live_data(session: AsyncSession, row: TaskOrder, out: TaskOrderOut) -> TaskOrderOut:
    """The detail's live sessions (with their GMV on the order's products) and the watch link."""
    sessions = list(await session.scalars(
        select(LiveSession).join(TaskOrderLiveSession, TaskOrderLiveSession.live_session_id == LiveSession.id)
        .where(TaskOrderLiveSession.task_order_id == row.id).order_by(LiveSession.started_at)))
    product_ids = [p.product_id for p in out.products]
    gmv: dict[str, int] = {}
    if sessions and product_ids:
        gmv = {sid: int(total or 0) for sid, total in (await session.execute(
            select(SalesOrder.live_session_id, func.sum(SalesOrder.amount_fen))
            .where(SalesOrder.live_session_id.in_([s.id for s in sessions]),
                   SalesOrder.product_id.in_(product_ids), SalesOrder.shop_id == row.merchant_id,
                   SalesOrder.status == "paid")
            .group_by(SalesOrder.live_session_id))).all()}
    out.live_sessions = [LiveSessionInfo(id=s.id, started_at=s.started_at, ended_at=s.ended_at,
                                         peak_viewers=s.peak_viewers, room_url=s.room_url, gmv_fen=gmv.get(s.id, 0))
                         for s in sessions]
    if sessions:
        latest = sessions[-1]
        out.watch = WatchOut(room_url=latest.room_url, qr_svg_url=qr_svg_url(latest.id))
    return out


# =========================================================================== loading
def _visible(row: TaskOrder | None, actor: Actor) -> bool:
    return row is not None and (actor.role == "operator" or actor.id in (row.merchant_id, row.creator_id))


def _overdue(row: TaskOrder, now: datetime) -> bool:
    """Whether one of the order's deadline timers has fallen due: `expire` at `accept_deadline`
    while pending acceptance, `auto_approve` at `review_deadline` while pending review."""
    deadline = row.accept_deadline if row.state == "pending_acceptance" \
        else row.review_deadline if row.state == "pending_review" else None
    return deadline is not None and deadline <= now


async def _load(session: AsyncSession, actor: Actor, order_id: str, *, lock: bool) -> TaskOrder:
    """The order as of now: an overdue deadline is fired first, as the sweeper would have (the
    timer query only runs when the row says a deadline has passed)."""
    if lock:
        row = await session.scalar(_ORDER_FOR_UPDATE, {"id": order_id})
    else:
        row = await session.get(TaskOrder, order_id)
    if not _visible(row, actor):
        raise NotFound("no such task order")
    assert row is not None
    if _overdue(row, await clock.now(session)):
        await fire_due(session, entity_id=order_id)  # reloads `row` (populate_existing)
    return row


# =========================================================================== creation
async def create_order(session: AsyncSession, actor: Actor, body: TaskOrderCreate) -> TaskOrderOut:
    now = await clock.now(session)
    settings = get_settings()
    if body.expected_start_at <= now:
        raise ValidationFailed("expected_start_at must be in the future", loc=["body", "expected_start_at"])
    if body.expected_start_at > now + BOOKING_HORIZON:
        raise ValidationFailed("expected_start_at is at most 365 days ahead", loc=["body", "expected_start_at"])
    accounts = {a.id: a for a in await session.scalars(_ACCOUNTS, {"ids": [body.creator_id, actor.id]})}
    creator = accounts.get(body.creator_id)
    if creator is None or creator.role != "creator":
        raise ValidationFailed("no such creator", loc=["body", "creator_id"])
    products = {p.id: p for p in await session.scalars(_PRODUCTS, {"ids": [p.product_id for p in body.products]})}
    items: list[dict] = []
    for index, item in enumerate(body.products):
        loc: list[str | int] = ["body", "products", index]
        product = products.get(item.product_id)
        if product is None or product.shop_id != actor.id:
            raise ValidationFailed("no such product in your shop", loc=[*loc, "product_id"])
        if product.status != "on_sale":
            raise ValidationFailed("the product is not on sale", loc=[*loc, "product_id"], code="product_off_sale")
        if item.plan is Plan.general:
            if product.general_commission_bp is None:
                raise ValidationFailed("the product is not in the general plan", loc=[*loc, "plan"])
            if item.commission_bp is not None and item.commission_bp != product.general_commission_bp:
                raise ValidationFailed(f"the general plan pays the product's rate, {product.general_commission_bp} bp",
                                       loc=[*loc, "commission_bp"])
            rate = product.general_commission_bp
        else:
            rate = int(item.commission_bp or 0)
        items.append({"id": id_for(TaskOrderProduct), "task_order_id": None, "product_id": product.id, "plan": item.plan.value,
                      "commission_bp": rate, "position": index})
    merchant = accounts.get(actor.id)
    if merchant is None or not merchant.xingtu_account_id:
        raise Conflict("bind a Xingtu account first (POST /v1/xingtu-binding)", code="xingtu_not_bound")
    if not creator.accepting_orders:
        raise Conflict("the creator is resting (休息中) and takes no orders", code="creator_resting")
    hourly = creator.quote_dedicated_hourly_fen if body.session_type is SessionType.dedicated \
        else creator.quote_shared_hourly_fen
    if hourly is None:
        raise Conflict(f"the creator has no {body.session_type.value} quote", code="creator_quote_missing")
    amount = hourly * body.hours
    row = TaskOrder(merchant_id=actor.id, creator_id=creator.id, title=body.title, contact_name=body.contact_name,
                    contact_phone=body.contact_phone, expected_start_at=body.expected_start_at,
                    return_samples=body.return_samples, session_type=body.session_type.value, hours=body.hours,
                    hourly_fen=hourly, amount_fen=amount, created_at=now,
                    accept_deadline=now + timedelta(hours=settings.accept_timeout_hours), creator_received_fen=0)
    try:  # locks the merchant's wallet and checks the balance before anything is written
        hold_status = await wallet.freeze(session, actor.id, creator.id, amount, ref_type=REF, ref_id=row.id,
                                          memo=f"任务冻结 {row.title}")
    except Conflict as exc:
        if exc.code == "insufficient_balance":
            raise Conflict("the available balance is lower than the order amount; top up first",
                           code="insufficient_balance", required_fen=amount,
                           available_fen=exc.extra.get("available_fen")) from None
        raise
    # the order's products, its acceptance deadline, the creator's message and SMS go out in the
    # statement of the order's event
    for item in items:
        item["task_order_id"] = row.id
    await TASK_ORDER.create(
        session, row, actor, now=now, event_data={"amount_fen": amount, "creator_id": creator.id},
        also=[(TaskOrderProduct.__table__, items), new_timer("task_order", row.id, "expire", row.accept_deadline),
              *message_rows(creator.id, "task_order.created", "新的直播带货任务",
                            f"商家发来任务「{row.title}」，金额 {amount / 100:.2f} 元，请在 24 小时内处理",
                            {"task_order_id": row.id}, now, sms_phone=creator.contact_phone)])
    # the answer is built from what this request holds: a new order has no live session yet
    out = _out(row, actor, now, nickname=creator.nickname, hold_status=hold_status, products=[
        OrderProductOut(product_id=i["product_id"], title=products[i["product_id"]].title, plan=Plan(i["plan"]),
                        commission_bp=i["commission_bp"]) for i in items])
    out.live_sessions = []
    return out


# =========================================================================== reading
_STATUS_STATES: dict[str, list[str]] = {}
for _state, (_status, _sub) in STATUS.items():
    _STATUS_STATES.setdefault(_status, []).append(_state)
_SUB_STATES = {sub: state for state, (_, sub) in STATUS.items() if sub}


def _scoped(actor: Actor):
    query = select(TaskOrder)
    if actor.role == "merchant":
        return query.where(TaskOrder.merchant_id == actor.id)
    if actor.role == "creator":
        return query.where(TaskOrder.creator_id == actor.id)
    if actor.role == "operator":
        return query
    raise NotFound("task orders are for merchants, creators and operators")


async def list_orders(session: AsyncSession, actor: Actor, *, status: str | None, sub_status: str | None,
                      q: str | None, created_from: datetime | None, created_to: datetime | None,
                      limit: int, cursor: str | None) -> tuple[list[TaskOrderOut], str | None]:
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("a time zone is required (RFC 3339)", loc=["query", name])
    await fire_due(session, machines=["task_order"])
    query = _scoped(actor)
    if status:
        query = query.where(TaskOrder.state.in_(_STATUS_STATES[status]))
    if sub_status:
        query = query.where(TaskOrder.state == _SUB_STATES[sub_status])
    if created_from:
        query = query.where(TaskOrder.created_at >= created_from)
    if created_to:
        query = query.where(TaskOrder.created_at < created_to)
    if q:
        creators = select(Account.id).where(Account.role == "creator", Account.nickname.contains(q, autoescape=True))
        query = query.where(or_(TaskOrder.title.contains(q, autoescape=True), TaskOrder.creator_id.in_(creators)))
    rows, next_cursor = await keyset_page(session, query, TaskOrder.id, limit=limit, cursor=cursor)
    return await _outs(session, rows, actor, await clock.now(session)), next_cursor


async def counts(session: AsyncSession, actor: Actor) -> dict[str, int]:
    await fire_due(session, machines=["task_order"])
    scoped = _scoped(actor).subquery()
    rows = (await session.execute(select(scoped.c.state, func.count()).group_by(scoped.c.state))).all()
    result = {status: 0 for status in _STATUS_STATES}
    for state, n in rows:
        result[STATUS[state][0]] += n
    result["all"] = sum(n for _, n in rows)
    return result


async def get_order(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row = await _load(session, actor, order_id, lock=False)
    return await _detail(session, row, actor, await clock.now(session))


async def order_history(session: AsyncSession, actor: Actor, order_id: str):
    from app.state.core import history

    await _load(session, actor, order_id, lock=False)
    return await history(session, "task_order", order_id)


# =========================================================================== actions
def _finish(row: TaskOrder, now: datetime) -> None:
    row.finished_at = now


async def _settle(session: AsyncSession, row: TaskOrder, creator_fen: int, memo: str) -> None:
    await wallet.split(session, row.id, creator_fen, ref_type=REF, memo=memo)
    row.creator_received_fen = creator_fen


async def accept(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row = await _load(session, actor, order_id, lock=True)
    now = await clock.now(session)
    parts = (await _parts_of(session, [row.id]))[row.id]  # accepting changes none of them
    plans = [{"id": id_for(TargetedPlan), "task_order_id": row.id, "merchant_id": row.merchant_id,
              "creator_id": row.creator_id, "product_id": p.product_id, "commission_bp": p.commission_bp,
              "created_at": now} for p in parts.products if p.plan is Plan.targeted]
    await TASK_ORDER.fire(session, row, "accept", actor, now=now, changes={"accepted_at": now}, also=[
        (TargetedPlan.__table__, plans),
        *message_rows(row.merchant_id, "task_order.accepted", "达人已接单", f"任务「{row.title}」已被达人接受",
                      {"task_order_id": row.id}, now)])
    out = _out(row, actor, now, products=parts.products, nickname=parts.nickname, hold_status=parts.hold_status)
    out.live_sessions = []  # live sessions link to accepted orders only (`_on_live_started`)
    return out


async def reject(session: AsyncSession, actor: Actor, order_id: str, body: TaskOrderRejectIn | None) -> TaskOrderOut:
    row = await _load(session, actor, order_id, lock=True)
    now = await clock.now(session)
    reason = body.reason if body else None
    await TASK_ORDER.fire(session, row, "reject", actor, now=now, reason=reason)
    _finish(row, now)
    row.compensation_fen, row.compensation_rule = 0, "creator_rejected"
    await _settle(session, row, 0, "达人拒绝任务，解冻")
    await notify(session, row.merchant_id, "task_order.rejected", "达人拒绝了任务",
                 f"任务「{row.title}」被达人拒绝，冻结金额已退回", {"task_order_id": row.id})
    await session.flush()
    return await _detail(session, row, actor, now)


async def remind(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row = await _load(session, actor, order_id, lock=True)
    now = await clock.now(session)
    today = clock.local_date(now).isoformat()
    if TASK_ORDER.can(row, "remind", actor, now) and row.last_reminded_on == today:
        raise TooManyRequests("the creator was already reminded today (once per day, Asia/Shanghai)",
                              retry_after=int((clock.next_local_midnight(now) - now).total_seconds()) + 1)
    await TASK_ORDER.fire(session, row, "remind", actor, now=now)
    row.last_reminded_on = today
    creator = await session.get(Account, row.creator_id)
    if creator is not None:
        await notify_with_sms(session, creator, "task_order.reminded", "商家提醒您接单",
                              f"任务「{row.title}」等待您处理，截止 "
                              f"{row.accept_deadline.astimezone(clock.SHANGHAI):%m-%d %H:%M}",
                              {"task_order_id": row.id})
    await session.flush()
    return await _detail(session, row, actor, now)


async def approve(session: AsyncSession, actor: Actor, order_id: str) -> TaskOrderOut:
    row = await _load(session, actor, order_id, lock=True)
    now = await clock.now(session)
    await TASK_ORDER.fire(session, row, "approve", actor, now=now)
    await _complete(session, row, now, "商家验收通过，支付达人")
    return await _detail(session, row, actor, now)


async def _complete(session: AsyncSession, row: TaskOrder, now: datetime, memo: str) -> None:
    _finish(row, now)
    await _settle(session, row, row.amount_fen, memo)
    await notify(session, row.creator_id, "task_order.completed", "任务已完成",
                 f"任务「{row.title}」已验收，{row.amount_fen / 100:.2f} 元已到账", {"task_order_id": row.id})
    await session.flush()


def compensation(row: TaskOrder, now: datetime, linked: bool) -> tuple[int, str]:
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
    row = await _load(session, actor, order_id, lock=True)
    now = await clock.now(session)
    if actor.role not in TASK_ORDER.roles_of("cancel"):
        raise Forbidden(f"a {actor.role} may not cancel a task order")
    reason = _REASONS.get(body.reason.code)
    if reason is None or actor.role not in reason.parties:
        raise ValidationFailed("unknown cancel reason (GET /v1/task-orders/cancel-reasons)",
                               loc=["body", "reason", "code"])
    if reason.code == "other" and not (body.reason.note or "").strip():
        raise ValidationFailed("say why in the note", loc=["body", "reason", "note"])
    linked = await session.scalar(select(func.count()).select_from(TaskOrderLiveSession)
                                  .where(TaskOrderLiveSession.task_order_id == row.id))
    await TASK_ORDER.fire(session, row, "cancel", actor, now=now, reason=body.reason.model_dump())
    if row.state == "cancelled_by_merchant":
        fen, rule_name = compensation(row, now, bool(linked))
        other = row.creator_id
    else:
        fen, rule_name = 0, "creator_cancelled"
        other = row.merchant_id
    _finish(row, now)
    row.cancelled_by = actor.role
    row.cancel_reason_code, row.cancel_reason_note = body.reason.code, body.reason.note
    row.compensation_fen, row.compensation_rule = fen, rule_name
    await _settle(session, row, fen, f"取消任务，赔付 {fen} 分（{rule_name}）")
    await notify(session, other, "task_order.cancelled", "任务已取消",
                 f"任务「{row.title}」已被{'商家' if actor.role == 'merchant' else '达人'}取消：{reason.label}",
                 {"task_order_id": row.id, "compensation_fen": fen})
    await session.flush()
    return await _detail(session, row, actor, now)


@on_timer("task_order", "expire")
async def _expire(session: AsyncSession, row: TaskOrder, now: datetime) -> None:
    await TASK_ORDER.fire(session, row, "expire", SYSTEM, now=now)
    _finish(row, now)
    row.compensation_fen, row.compensation_rule = 0, "creator_timeout"
    await _settle(session, row, 0, "达人超时未接单，解冻")
    await notify(session, row.merchant_id, "task_order.expired", "任务已超时",
                 f"达人 24 小时内未处理任务「{row.title}」，冻结金额已退回", {"task_order_id": row.id})


@on_timer("task_order", "auto_approve")
async def _auto_approve(session: AsyncSession, row: TaskOrder, now: datetime) -> None:
    await TASK_ORDER.fire(session, row, "auto_approve", SYSTEM, now=now)
    await _complete(session, row, now, "验收期满自动确认，支付达人")


# =========================================================================== live sessions
@live_session_started.connect
async def _on_live_started(session: AsyncSession, live_session: LiveSession) -> None:
    settings = get_settings()
    before = timedelta(minutes=settings.link_window_before_minutes)
    after = timedelta(minutes=settings.link_window_after_minutes)
    # the window [expected - before, expected + after] contains started_at
    try:
        lowest, highest = live_session.started_at - after, live_session.started_at + before
    except OverflowError:  # a session at the edge of the calendar links nothing
        return
    ids = list(await session.scalars(
        select(TaskOrder.id).where(TaskOrder.creator_id == live_session.host_id, TaskOrder.state == "waiting_live",
                                   TaskOrder.expected_start_at >= lowest, TaskOrder.expected_start_at <= highest)
        .order_by(TaskOrder.id)))
    if not ids:
        return
    now = await clock.now(session)
    for order_id in ids:
        row = await TASK_ORDER.load_for_update(session, order_id)
        if row.state != "waiting_live":
            continue
        await TASK_ORDER.fire(session, row, "start", SYSTEM, now=now, event_data={"live_session_id": live_session.id})
        session.add(TaskOrderLiveSession(task_order_id=row.id, live_session_id=live_session.id, linked_at=now))
        await notify(session, row.merchant_id, "task_order.started", "达人开播了",
                     f"任务「{row.title}」的直播已开始", {"task_order_id": row.id,
                                                       "live_session_id": live_session.id})
    await session.flush()


@live_session_ended.connect
async def _on_live_ended(session: AsyncSession, live_session: LiveSession) -> None:
    ids = list(await session.scalars(
        select(TaskOrder.id).join(TaskOrderLiveSession, TaskOrderLiveSession.task_order_id == TaskOrder.id)
        .where(TaskOrderLiveSession.live_session_id == live_session.id, TaskOrder.state == "live")
        .order_by(TaskOrder.id)))
    if not ids:
        return
    now = await clock.now(session)
    ended_at = min(live_session.ended_at or now, now + BOOKING_HORIZON)  # no overflow at the calendar's edge
    for order_id in ids:
        row = await TASK_ORDER.load_for_update(session, order_id)
        if row.state != "live":
            continue
        await TASK_ORDER.fire(session, row, "end", SYSTEM, now=now, event_data={"live_session_id": live_session.id})
        row.review_deadline = ended_at + timedelta(days=get_settings().review_days)
        await schedule(session, "task_order", row.id, "auto_approve", row.review_deadline)
        await notify(session, row.merchant_id, "task_order.ended", "直播已结束，请验收",
                     f"任务「{row.title}」的直播已结束，请在 "
                     f"{row.review_deadline.astimezone(clock.SHANGHAI):%m-%d %H:%M} 前验收，逾期自动确认",
                     {"task_order_id": row.id})
    await session.flush()


async def live_session_qr(session: AsyncSession, actor: Actor, live_session_id: str) -> str:
    """The SVG QR code of a live session's room URL (观看直播). Visible to its host, operators,
    and the parties of a task order linked to it."""
    import io

    import segno

    live = await session.get(LiveSession, live_session_id)
    if live is None:
        raise NotFound("no such live session")
    if actor.role != "operator" and actor.id != live.host_id:
        party = await session.scalar(
            select(TaskOrderLiveSession.id).join(TaskOrder, TaskOrder.id == TaskOrderLiveSession.task_order_id)
            .where(TaskOrderLiveSession.live_session_id == live.id,
                   or_(TaskOrder.merchant_id == actor.id, TaskOrder.creator_id == actor.id)).limit(1))
        if party is None:
            raise NotFound("no such live session")
    out = io.BytesIO()
    segno.make(live.room_url, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=True)
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


async def list_targeted_plans(session: AsyncSession, actor: Actor, *, limit: int,
                              cursor: str | None) -> tuple[list[TargetedPlanOut], str | None]:
    query = select(TargetedPlan)
    if actor.role == "merchant":
        query = query.where(TargetedPlan.merchant_id == actor.id)
    elif actor.role == "creator":
        query = query.where(TargetedPlan.creator_id == actor.id)
    elif actor.role != "operator":
        raise NotFound("targeted plans are for merchants, creators and operators")
    rows, next_cursor = await keyset_page(session, query, TargetedPlan.id, limit=limit, cursor=cursor)
    titles = dict((await session.execute(select(Product.id, Product.title).where(
        Product.id.in_({r.product_id for r in rows})))).all()) if rows else {}
    return [TargetedPlanOut(id=r.id, task_order_id=r.task_order_id, merchant_id=r.merchant_id,
                            creator_id=r.creator_id, product_id=r.product_id, product_title=titles.get(r.product_id),
                            commission_bp=r.commission_bp, created_at=r.created_at) for r in rows], next_cursor


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


def _dispute_out(row: Dispute, order: TaskOrder, actor: Actor, now: datetime) -> DisputeOut:
    return DisputeOut(id=row.id, task_order_id=row.task_order_id, state=row.state, version=row.version,
                      allowed_actions=DISPUTE.allowed_actions(row, actor, now), opened_by=row.opened_by,
                      opened_by_role=row.opened_by_role, reason=row.reason, amount_fen=order.amount_fen,
                      creator_received_fen=order.creator_received_fen, creator_share_fen=row.creator_share_fen,
                      adjustment_fen=row.adjustment_fen, resolution_note=row.resolution_note,
                      created_at=row.created_at, closed_at=row.closed_at)


async def open_dispute(session: AsyncSession, actor: Actor, order_id: str, body: DisputeCreate) -> DisputeOut:
    order = await _load(session, actor, order_id, lock=True)
    if actor.id not in (order.merchant_id, order.creator_id):
        raise NotFound("no such task order")
    now = await clock.now(session)
    if order.state not in FINAL or order.finished_at is None:
        raise Conflict("a dispute is opened on an order that ended (completed or cancelled)",
                       code="order_not_ended", state=order.state)
    if now - order.finished_at > DISPUTE_WINDOW:
        raise Conflict("disputes are opened within 30 days of the order's end", code="dispute_window_closed")
    existing = list(await session.scalars(select(Dispute).where(Dispute.task_order_id == order.id)))
    if any(d.state in ("open", "resolved") for d in existing) or any(d.opened_by == actor.id for d in existing):
        raise Conflict("this order already has a dispute (one per party; none after a resolution)",
                       code="dispute_exists")
    row = Dispute(task_order_id=order.id, merchant_id=order.merchant_id, creator_id=order.creator_id,
                  opened_by=actor.id, opened_by_role=actor.role, reason=body.reason, created_at=now)
    await DISPUTE.create(session, row, actor, now=now, reason=body.reason, event_data={"task_order_id": order.id})
    other = order.creator_id if actor.id == order.merchant_id else order.merchant_id
    await notify(session, other, "dispute.created", "交易纠纷", f"任务「{order.title}」有新的纠纷：{body.reason}",
                 {"dispute_id": row.id, "task_order_id": order.id})
    return _dispute_out(row, order, actor, now)


async def _visible_dispute(session: AsyncSession, actor: Actor, dispute_id: str, *, lock: bool) -> Dispute:
    row = await DISPUTE.load_for_update(session, dispute_id) if lock else await session.get(Dispute, dispute_id)
    if row is None or (actor.role != "operator" and actor.id not in (row.merchant_id, row.creator_id)):
        raise NotFound("no such dispute")
    return row


async def get_dispute(session: AsyncSession, actor: Actor, dispute_id: str) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=False)
    order = await session.get(TaskOrder, row.task_order_id)
    assert order is not None
    return _dispute_out(row, order, actor, await clock.now(session))


async def resolve_dispute(session: AsyncSession, actor: Actor, dispute_id: str, body: DisputeResolve) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=True)
    order = await session.scalar(select(TaskOrder).where(TaskOrder.id == row.task_order_id).with_for_update()
                                 .execution_options(populate_existing=True))
    assert order is not None
    now = await clock.now(session)
    if body.creator_share_fen > order.amount_fen:
        raise ValidationFailed(f"the creator's share is at most the order's amount ({order.amount_fen})",
                               loc=["body", "creator_share_fen"])
    await DISPUTE.fire(session, row, "resolve", actor, now=now, reason=body.note,
                       event_data={"creator_share_fen": body.creator_share_fen})
    diff = body.creator_share_fen - order.creator_received_fen
    if diff:
        payer, payee = (order.merchant_id, order.creator_id) if diff > 0 else (order.creator_id, order.merchant_id)
        try:
            await wallet.transfer(session, payer, payee, abs(diff), kind="dispute", ref_type="dispute", ref_id=row.id,
                                  memo=f"纠纷裁定：达人最终分得 {body.creator_share_fen} 分")
        except Conflict as exc:
            if exc.code == "insufficient_balance":
                raise Conflict("the paying side's available balance cannot cover the adjustment",
                               code="insufficient_balance", required_fen=abs(diff),
                               available_fen=exc.extra.get("available_fen"), payer_id=payer) from None
            raise
    order.creator_received_fen = body.creator_share_fen
    row.creator_share_fen, row.adjustment_fen, row.resolution_note, row.closed_at = \
        body.creator_share_fen, diff, body.note, now
    for party in (order.merchant_id, order.creator_id):
        await notify(session, party, "dispute.resolved", "纠纷已裁定",
                     f"任务「{order.title}」纠纷裁定：达人分得 {body.creator_share_fen / 100:.2f} 元",
                     {"dispute_id": row.id, "task_order_id": order.id})
    await session.flush()
    return _dispute_out(row, order, actor, now)


async def withdraw_dispute(session: AsyncSession, actor: Actor, dispute_id: str) -> DisputeOut:
    row = await _visible_dispute(session, actor, dispute_id, lock=True)
    order = await session.get(TaskOrder, row.task_order_id)
    assert order is not None
    now = await clock.now(session)
    await DISPUTE.fire(session, row, "withdraw", actor, now=now)
    row.closed_at = now
    await session.flush()
    return _dispute_out(row, order, actor, now)


# =========================================================================== demo data
async def demo_step(session: AsyncSession, accounts: dict[str, Account]) -> list[str]:
    """Fund the demo merchant with 1,000,000 fen through a succeeded top-up and bind its Xingtu
    account. Idempotent."""
    merchant = accounts.get("merchant")
    if merchant is None:
        return []
    lines = []
    if not merchant.xingtu_account_id:
        merchant.xingtu_account_id = "xt_demo_merchant"
        lines.append("  Xingtu account bound for the merchant")
    done = await session.scalar(select(TopUp.id).where(TopUp.account_id == merchant.id,
                                                       TopUp.reference == "demo-funding"))
    if not done:
        await wallet.create_top_up(session, Actor(merchant.id, "merchant"), wallet.TopUpCreate(
            amount_fen=1_000_000, method=wallet.TopUpMethod.online, reference="demo-funding"),
            gateway=wallet.InstantGateway())
        lines.append("  merchant wallet funded with 1,000,000 fen (succeeded top-up)")
    await session.flush()
    return lines


def _register_demo() -> None:
    from app.demo import DEMO_STEPS

    if demo_step not in DEMO_STEPS:
        DEMO_STEPS.append(demo_step)


_register_demo()
