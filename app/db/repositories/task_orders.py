"""Statements of the task orders module: task orders with their products, live-session links,
targeted plans and disputes; the creator square and the Xingtu binding read and write
accounts for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.accounts import Account, Product
from app.db.models.facts import LiveSession, SalesOrder
from app.db.models.task_orders import Dispute, Hold, TargetedPlan, TaskOrder, TaskOrderLiveSession, TaskOrderProduct
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.repositories.platform import CLOCK_OFFSET
from app.db.session import dialect_of

task_orders = table_of(TaskOrder)
order_products = table_of(TaskOrderProduct)
order_live_sessions = table_of(TaskOrderLiveSession)
targeted_plans = table_of(TargetedPlan)
disputes = table_of(Dispute)
accounts = table_of(Account)
products = table_of(Product)
holds = table_of(Hold)
live_sessions = table_of(LiveSession)
sales_orders = table_of(SalesOrder)


@dataclass(frozen=True, slots=True)
class TaskOrderRecord:
    id: str
    state: str
    version: int
    merchant_id: str
    creator_id: str
    title: str
    contact_name: str
    contact_phone: str
    expected_start_at: datetime
    return_samples: bool
    session_type: str
    hours: int
    hourly_fen: int
    amount_fen: int
    created_at: datetime
    accept_deadline: datetime
    accepted_at: datetime | None
    review_deadline: datetime | None
    finished_at: datetime | None
    last_reminded_on: str | None
    cancel_reason_code: str | None
    cancel_reason_note: str | None
    cancelled_by: str | None
    compensation_fen: int | None
    compensation_rule: str | None
    creator_received_fen: int


@dataclass(frozen=True, slots=True)
class ProductPart:
    product_id: str
    title: str | None
    plan: str
    commission_bp: int


@dataclass
class OrderParts:
    """What an order's answer shows beyond its own row."""

    products: list[ProductPart]
    creator_nickname: str | None = None
    hold_status: str | None = None


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    id: str
    state: str
    version: int
    task_order_id: str
    merchant_id: str
    creator_id: str
    opened_by: str
    opened_by_role: str
    reason: str
    creator_share_fen: int | None
    adjustment_fen: int | None
    resolution_note: str | None
    created_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class PartyRecord:
    """An account as the creation of an order needs it."""

    id: str
    role: str
    nickname: str | None
    accepting_orders: bool | None
    quote_dedicated_hourly_fen: int | None
    quote_shared_hourly_fen: int | None
    xingtu_account_id: str | None
    contact_phone: str | None


@dataclass(frozen=True, slots=True)
class OfferedProduct:
    id: str
    shop_id: str
    title: str
    status: str
    general_commission_bp: int | None


@dataclass(frozen=True, slots=True)
class LinkedSession:
    id: str
    started_at: datetime
    ended_at: datetime | None
    peak_viewers: int
    room_url: str


@dataclass(frozen=True, slots=True)
class TargetedPlanRecord:
    id: str
    task_order_id: str
    merchant_id: str
    creator_id: str
    product_id: str
    product_title: str | None
    commission_bp: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatorCardRecord:
    id: str
    display_name: str
    nickname: str | None
    level: int | None
    followers: int | None
    accepting_orders: bool | None
    quote_dedicated_hourly_fen: int | None
    quote_shared_hourly_fen: int | None


def _with_clock(statement: Select) -> tuple[Select, Select]:
    """The statement without and with the test clock's offset as a column."""
    return statement, statement.add_columns(CLOCK_OFFSET)


# --------------------------------------------------------------------------- creation
_PARTIES = _with_clock(
    select(
        accounts.c.id,
        accounts.c.role,
        accounts.c.nickname,
        accounts.c.accepting_orders,
        accounts.c.quote_dedicated_hourly_fen,
        accounts.c.quote_shared_hourly_fen,
        accounts.c.xingtu_account_id,
        accounts.c.contact_phone,
    ).where(or_(accounts.c.id == bindparam("a"), accounts.c.id == bindparam("b")))
)
_OFFERED_COLUMNS = (products.c.id, products.c.shop_id, products.c.title, products.c.status, products.c.general_commission_bp)
# an array parameter on PostgreSQL (one SQL text whatever the number of ids: the fast lane);
# an expanding IN elsewhere
_OFFERED = {
    "postgresql": select(*_OFFERED_COLUMNS).where(products.c.id == any_(bindparam("ids", type_=ARRAY(String)))),
    "sqlite": select(*_OFFERED_COLUMNS).where(products.c.id.in_(bindparam("ids", expanding=True))),
}


async def parties(
    session: AsyncSession, first_id: str, second_id: str, *, with_clock: bool
) -> tuple[dict[str, PartyRecord], int | None]:
    """Two accounts (the parties of an order to be created), and the test clock's offset when
    asked."""
    rows = (await run(session, _PARTIES[with_clock], {"a": first_id, "b": second_id})).all()
    offset = rows[0].clock_offset if with_clock and rows else None
    return {row.id: record_of(PartyRecord, row) for row in rows}, offset


async def offered_products(session: AsyncSession, product_ids: list[str]) -> dict[str, OfferedProduct]:
    rows = await run(session, _OFFERED[dialect_of(session).name], {"ids": product_ids})
    return {row.id: record_of(OfferedProduct, row) for row in rows}


# --------------------------------------------------------------------------- one order
_PART_COLUMNS = (
    order_products.c.product_id,
    products.c.title,
    order_products.c.plan,
    order_products.c.commission_bp,
    accounts.c.nickname.label("creator_nickname"),
    holds.c.status.label("hold_status"),
)
_ORDER_WITH_PARTS = _with_clock(
    select(task_orders, *_PART_COLUMNS)
    .join(order_products, order_products.c.task_order_id == task_orders.c.id)
    .join(products, products.c.id == order_products.c.product_id)
    .join(accounts, accounts.c.id == task_orders.c.creator_id)
    .outerjoin(holds, holds.c.ref_id == task_orders.c.id)
    .where(task_orders.c.id == bindparam("id"))
    .order_by(order_products.c.position)
)
_PARTS_OF = (
    select(order_products.c.task_order_id, *_PART_COLUMNS)
    .join(products, products.c.id == order_products.c.product_id)
    .join(task_orders, task_orders.c.id == order_products.c.task_order_id)
    .join(accounts, accounts.c.id == task_orders.c.creator_id)
    .outerjoin(holds, holds.c.ref_id == order_products.c.task_order_id)
    .where(order_products.c.task_order_id.in_(bindparam("ids", expanding=True)))
    .order_by(order_products.c.task_order_id, order_products.c.position)
)
_ORDER_FOR_UPDATE = select(task_orders).where(task_orders.c.id == bindparam("id")).with_for_update()


def _part(row: Any) -> ProductPart:
    return ProductPart(row.product_id, row.title, row.plan, row.commission_bp)


async def order_with_parts(
    session: AsyncSession, order_id: str, *, with_clock: bool
) -> tuple[TaskOrderRecord, OrderParts, int | None] | None:
    """An order with its products (titles included), the creator's nickname and the hold's
    status — one statement, carrying the test clock's offset when asked."""
    rows = (await run(session, _ORDER_WITH_PARTS[with_clock], {"id": order_id})).all()
    if not rows:
        return None
    first = rows[0]
    parts = OrderParts([_part(r) for r in rows], first.creator_nickname, first.hold_status)
    return record_of(TaskOrderRecord, first), parts, first.clock_offset if with_clock else None


async def lock_order(session: AsyncSession, order_id: str) -> TaskOrderRecord | None:
    row = (await run(session, _ORDER_FOR_UPDATE, {"id": order_id})).first()
    return None if row is None else record_of(TaskOrderRecord, row)


async def parts_of(session: AsyncSession, order_ids: list[str]) -> dict[str, OrderParts]:
    """Products, the creator's nickname and the hold's status of orders, in one query (every
    order has at least one product, one creator and one hold)."""
    result = {i: OrderParts([]) for i in order_ids}
    if order_ids:
        for row in await run(session, _PARTS_OF, {"ids": order_ids}):
            parts = result[row.task_order_id]
            parts.products.append(_part(row))
            parts.creator_nickname, parts.hold_status = row.creator_nickname, row.hold_status
    return result


# --------------------------------------------------------------------------- lists
def _visible_to(role: str, account_id: str) -> Select | None:
    """The orders a caller may see: a merchant its own, a creator those addressed to it, an
    operator all; None for any other role."""
    query = select(task_orders)
    if role == "merchant":
        return query.where(task_orders.c.merchant_id == account_id)
    if role == "creator":
        return query.where(task_orders.c.creator_id == account_id)
    if role == "operator":
        return query
    return None


def may_see_orders(role: str) -> bool:
    return role in ("merchant", "creator", "operator")


async def orders_page(
    session: AsyncSession,
    role: str,
    account_id: str,
    *,
    states: list[str] | None,
    q: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> Page[TaskOrderRecord]:
    query = _visible_to(role, account_id)
    assert query is not None
    if states is not None:
        query = query.where(task_orders.c.state.in_(states))
    if created_from:
        query = query.where(task_orders.c.created_at >= created_from)
    if created_to:
        query = query.where(task_orders.c.created_at < created_to)
    if q:
        creators = select(accounts.c.id).where(accounts.c.role == "creator", accounts.c.nickname.contains(q, autoescape=True))
        query = query.where(or_(task_orders.c.title.contains(q, autoescape=True), task_orders.c.creator_id.in_(creators)))
    return await keyset(session, query, task_orders.c.id, TaskOrderRecord, limit=limit, cursor=cursor)


async def state_counts(session: AsyncSession, role: str, account_id: str) -> list[tuple[str, int]]:
    scoped = _visible_to(role, account_id)
    assert scoped is not None
    sub = scoped.subquery()
    return [(state, int(n)) for state, n in await run(session, select(sub.c.state, func.count()).group_by(sub.c.state))]


# --------------------------------------------------------------------------- live sessions
_LINKED_SESSIONS = (
    select(
        live_sessions.c.id,
        live_sessions.c.started_at,
        live_sessions.c.ended_at,
        live_sessions.c.peak_viewers,
        live_sessions.c.room_url,
    )
    .join(order_live_sessions, order_live_sessions.c.live_session_id == live_sessions.c.id)
    .where(order_live_sessions.c.task_order_id == bindparam("id"))
    .order_by(live_sessions.c.started_at)
)
_GMV = (
    select(sales_orders.c.live_session_id, func.sum(sales_orders.c.amount_fen))
    .where(
        sales_orders.c.live_session_id.in_(bindparam("sessions", expanding=True)),
        sales_orders.c.product_id.in_(bindparam("products", expanding=True)),
        sales_orders.c.shop_id == bindparam("shop"),
        sales_orders.c.status == "paid",
    )
    .group_by(sales_orders.c.live_session_id)
)
_LINK_COUNT = select(func.count()).select_from(order_live_sessions).where(order_live_sessions.c.task_order_id == bindparam("id"))
_TO_LINK = (
    select(task_orders.c.id)
    .where(
        task_orders.c.creator_id == bindparam("creator"),
        task_orders.c.state == "waiting_live",
        task_orders.c.expected_start_at >= bindparam("lowest"),
        task_orders.c.expected_start_at <= bindparam("highest"),
    )
    .order_by(task_orders.c.id)
)
_LIVE_LINKED = (
    select(task_orders.c.id)
    .join(order_live_sessions, order_live_sessions.c.task_order_id == task_orders.c.id)
    .where(order_live_sessions.c.live_session_id == bindparam("live"), task_orders.c.state == "live")
    .order_by(task_orders.c.id)
)
_ROOM = select(live_sessions.c.host_id, live_sessions.c.room_url).where(live_sessions.c.id == bindparam("id"))
_PARTY_OF_SESSION = (
    select(order_live_sessions.c.id)
    .join(task_orders, task_orders.c.id == order_live_sessions.c.task_order_id)
    .where(
        order_live_sessions.c.live_session_id == bindparam("live"),
        or_(task_orders.c.merchant_id == bindparam("account"), task_orders.c.creator_id == bindparam("account")),
    )
    .limit(1)
)


async def linked_sessions(session: AsyncSession, order_id: str) -> list[LinkedSession]:
    return [record_of(LinkedSession, row) for row in await run(session, _LINKED_SESSIONS, {"id": order_id})]


async def gmv_by_session(session: AsyncSession, session_ids: list[str], product_ids: list[str], shop_id: str) -> dict[str, int]:
    """Paid amount of the shop's `product_ids` in each live session."""
    rows = await run(session, _GMV, {"sessions": session_ids, "products": product_ids, "shop": shop_id})
    return {sid: int(total or 0) for sid, total in rows}


async def has_linked_session(session: AsyncSession, order_id: str) -> bool:
    return bool((await run(session, _LINK_COUNT, {"id": order_id})).scalar())


async def orders_to_link(session: AsyncSession, creator_id: str, lowest: datetime, highest: datetime) -> list[str]:
    """The creator's orders waiting for a live session expected within [lowest, highest]."""
    return list((await run(session, _TO_LINK, {"creator": creator_id, "lowest": lowest, "highest": highest})).scalars())


async def live_orders_of_session(session: AsyncSession, live_session_id: str) -> list[str]:
    return list((await run(session, _LIVE_LINKED, {"live": live_session_id})).scalars())


async def room_of(session: AsyncSession, live_session_id: str) -> tuple[str, str] | None:
    """(host_id, room_url) of a live session."""
    row = (await run(session, _ROOM, {"id": live_session_id})).first()
    return None if row is None else (row.host_id, row.room_url)


async def is_party_of_session(session: AsyncSession, live_session_id: str, account_id: str) -> bool:
    """Whether the account is a party of a task order linked to the live session."""
    return (await run(session, _PARTY_OF_SESSION, {"live": live_session_id, "account": account_id})).first() is not None


# --------------------------------------------------------------------------- targeted plans
_PLANS = select(targeted_plans, products.c.title.label("product_title")).outerjoin(
    products, products.c.id == targeted_plans.c.product_id
)


async def targeted_plans_page(
    session: AsyncSession, role: str, account_id: str, *, limit: int, cursor: str | None
) -> Page[TargetedPlanRecord]:
    query = _PLANS
    if role == "merchant":
        query = query.where(targeted_plans.c.merchant_id == account_id)
    elif role == "creator":
        query = query.where(targeted_plans.c.creator_id == account_id)
    return await keyset(session, query, targeted_plans.c.id, TargetedPlanRecord, limit=limit, cursor=cursor)


# --------------------------------------------------------------------------- disputes
_DISPUTES_OF = select(disputes).where(disputes.c.task_order_id == bindparam("id"))


async def disputes_of(session: AsyncSession, order_id: str) -> list[DisputeRecord]:
    return [record_of(DisputeRecord, row) for row in await run(session, _DISPUTES_OF, {"id": order_id})]


# --------------------------------------------------------------------------- creator square, Xingtu binding
async def creators_page(
    session: AsyncSession, *, accepting_orders: bool | None, q: str | None, level_min: int | None, limit: int, cursor: str | None
) -> Page[CreatorCardRecord]:
    query = select(
        accounts.c.id,
        accounts.c.display_name,
        accounts.c.nickname,
        accounts.c.level,
        accounts.c.followers,
        accounts.c.accepting_orders,
        accounts.c.quote_dedicated_hourly_fen,
        accounts.c.quote_shared_hourly_fen,
    ).where(accounts.c.role == "creator")
    if accepting_orders is not None:
        query = query.where(accounts.c.accepting_orders.is_(accepting_orders))
    if level_min is not None:
        query = query.where(accounts.c.level >= level_min)
    if q:
        query = query.where(
            or_(accounts.c.nickname.contains(q, autoescape=True), accounts.c.display_name.contains(q, autoescape=True))
        )
    return await keyset(session, query, accounts.c.id, CreatorCardRecord, limit=limit, cursor=cursor)


_LOCK_XINGTU = select(accounts.c.xingtu_account_id).where(accounts.c.id == bindparam("id")).with_for_update()
_XINGTU_HOLDER = (
    select(accounts.c.id).where(accounts.c.xingtu_account_id == bindparam("xingtu"), accounts.c.id != bindparam("id")).limit(1)
)
_SET_XINGTU = update(accounts).where(accounts.c.id == bindparam("b_id")).values(xingtu_account_id=bindparam("b_xingtu"))


async def lock_xingtu_binding(session: AsyncSession, account_id: str) -> tuple[bool, str | None]:
    """(the account exists, its bound Xingtu account), with the account's row locked."""
    row = (await run(session, _LOCK_XINGTU, {"id": account_id})).first()
    return (False, None) if row is None else (True, row.xingtu_account_id)


async def xingtu_taken_by_other(session: AsyncSession, xingtu_account_id: str, account_id: str) -> bool:
    return (await run(session, _XINGTU_HOLDER, {"xingtu": xingtu_account_id, "id": account_id})).first() is not None


async def bind_xingtu(session: AsyncSession, account_id: str, xingtu_account_id: str) -> None:
    await run(session, _SET_XINGTU, {"b_id": account_id, "b_xingtu": xingtu_account_id})


_SET_RECEIVED = (
    update(task_orders)
    .where(task_orders.c.id == bindparam("b_id"))
    .values(creator_received_fen=bindparam("b_fen"), version=task_orders.c.version + 1)
    .returning(*task_orders.c)
)


async def set_creator_received(session: AsyncSession, order: TaskOrderRecord, fen: int) -> TaskOrderRecord:
    """What a dispute's resolution settles the creator's share at (the order is locked by the
    caller; its version steps like any change of the row)."""
    row = (await run(session, _SET_RECEIVED, {"b_id": order.id, "b_fen": fen})).one()
    return record_of(TaskOrderRecord, row)


prepare_module(globals())
