"""Statements of the live bases module: bases, creator and shop bindings, the product pool,
check-ins, cooperations and a base's statistics. Who sees which rows of a list is written once
per entity here (`_bases_visible_to`, `_bindings_visible_to`, `_visits_visible_to`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    Boolean,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.accounts import Account, Product
from app.db.models.facts import LiveSession, SalesOrder
from app.db.models.live_bases import CheckIn, Cooperation, CreatorBinding, LiveBase, PoolItem, ShopBinding
from app.db.models.platform import Timer
from app.db.pagination import key_after, page_of
from app.db.repositories import entities
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.repositories.platform import CLOCK_OFFSET
from app.db.repositories.products import ProductRecord
from app.db.session import dialect_of

live_bases = table_of(LiveBase)
timers = table_of(Timer)
# the machines whose due timers a creator's scan fires first (see _STANDING's timer_due)
VISIT_MACHINES = ("cooperation", "check_in")
creator_bindings = table_of(CreatorBinding)
shop_bindings = table_of(ShopBinding)
pool_items = table_of(PoolItem)
check_ins = table_of(CheckIn)
cooperations = table_of(Cooperation)
accounts = table_of(Account)
products = table_of(Product)
live_sessions = table_of(LiveSession)
sales_orders = table_of(SalesOrder)
T = TypeVar("T")


# --------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class LiveBaseRecord:
    id: str
    agency_id: str
    name: str
    address: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BaseWithAgency:
    base: LiveBaseRecord
    agency_name: str | None
    head_annual: bool


@dataclass(frozen=True, slots=True)
class ShopCardRecord:
    id: str
    shop_name: str | None
    experience_score: Decimal | None


@dataclass(frozen=True, slots=True)
class CreatorBindingRecord:
    id: str
    state: str
    version: int
    agency_id: str
    creator_id: str
    commission_bp: int
    invited_at: datetime
    expires_at: datetime
    began_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatorBindingFacts:
    """What a creator binding's answer shows beyond its row."""

    strong: bool  # the agency is a head annual agency (强绑定)
    live_count: int | None  # live sessions since the binding began (None before)
    bound_elsewhere: str | None = None  # an invitation's creator's active binding, if any


@dataclass(frozen=True, slots=True)
class ShopBindingRecord:
    id: str
    state: str
    version: int
    agency_id: str
    shop_id: str
    binding_type: str
    invited_at: datetime
    expires_at: datetime
    began_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class PoolItemView:
    """A pool item with its product and its shop."""

    id: str
    agency_id: str
    qualifies: bool
    listed: bool
    product: ProductRecord
    shop: ShopCardRecord


@dataclass(frozen=True, slots=True)
class PoolItemQualification:
    """What deciding whether a pool item qualifies reads."""

    id: str
    qualifies: bool
    listed: bool
    status: str
    brand: str | None


@dataclass(frozen=True, slots=True)
class CheckInRecord:
    id: str
    state: str
    version: int
    base_id: str
    agency_id: str
    creator_id: str
    eligible: bool
    reasons: list[Any]
    created_at: datetime
    expires_at: datetime
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    cooperation_id: str | None


@dataclass(frozen=True, slots=True)
class CooperationRecord:
    id: str
    state: str
    version: int
    base_id: str
    agency_id: str
    creator_id: str
    started_at: datetime
    ends_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class Standing:
    """What the check-in rules read about a creator at a base, as of a moment."""

    level: int | None
    strong_agency: str | None  # the head annual agency it is actively bound to
    cooperation_here: str | None  # its active cooperation with this base
    elsewhere: bool  # an active cooperation with another base
    present: str | None  # its check-in at this base that is checked in
    timer_due: bool = False  # some timer is due as of that moment (perhaps one of VISIT_MACHINES)


@dataclass(frozen=True, slots=True)
class Sales:
    key: str  # a creator's or a product's id
    name: str | None  # its nickname or title
    gmv_fen: int
    orders: int


@dataclass(frozen=True, slots=True)
class BaseStats:
    gmv_fen: int
    orders: int
    check_ins: int
    live_sessions: int
    by_creator: list[Sales]
    by_product: list[Sales]


async def _page(
    session: AsyncSession, query: Select, id_column: Any, build: Callable[[Any], T], *, limit: int, cursor: str | None
) -> Page[T]:
    """A keyset page, newest first, of rows that `build` turns into records (`keyset` for rows
    that are one record each)."""
    last = key_after(cursor, id_column)
    if last is not None:
        query = query.where(id_column < last)
    rows = (await run(session, query.order_by(id_column.desc()).limit(limit + 1))).all()
    rows, next_cursor = page_of(rows, limit, id_column.key)
    return Page([build(row) for row in rows], next_cursor)


def _ids_in(column: Any) -> dict[str, ColumnElement[bool]]:
    """`column` among the ids of a parameter: an array on PostgreSQL (one SQL text whatever the
    number of ids), an expanding IN elsewhere."""
    return {
        "postgresql": column == any_(bindparam("ids", type_=ARRAY(String))),
        "sqlite": column.in_(bindparam("ids", expanding=True)),
    }


# --------------------------------------------------------------------------- bases
_INSERT_BASE = insert(live_bases).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in live_bases.c})
_BASE = select(live_bases).where(live_bases.c.id == bindparam("id"))
_BASE_WITH_CLOCK = (_BASE, _BASE.add_columns(CLOCK_OFFSET))  # without, with the test clock's offset
_BASE_OF_AGENCY = select(live_bases.c.id).where(live_bases.c.agency_id == bindparam("agency")).limit(1)
_ACTIVE_SHOPS = (
    select(accounts.c.id, accounts.c.shop_name, accounts.c.experience_score)
    .join_from(shop_bindings, accounts, accounts.c.id == shop_bindings.c.shop_id)
    .where(shop_bindings.c.agency_id == bindparam("agency"), shop_bindings.c.state == "active")
    .order_by(accounts.c.id)
)
_PRODUCT_FIELDS = tuple(f.name for f in fields(ProductRecord))
_LISTED_PRODUCTS = (
    select(*[products.c[name] for name in _PRODUCT_FIELDS])
    .join_from(pool_items, products, products.c.id == pool_items.c.product_id)
    .where(pool_items.c.agency_id == bindparam("agency"), pool_items.c.listed.is_(True))
    .order_by(pool_items.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
)


def _bases_visible_to(role: str, account_id: str) -> Select:
    """The bases a caller may see: an agency its own, a merchant those of the agencies its shop
    is actively bound to, a creator (it may check in anywhere) and an operator every base."""
    query = select(live_bases)
    if role == "agency":
        return query.where(live_bases.c.agency_id == account_id)
    if role == "merchant":
        return query.where(
            live_bases.c.agency_id.in_(
                select(shop_bindings.c.agency_id).where(shop_bindings.c.shop_id == account_id, shop_bindings.c.state == "active")
            )
        )
    if role in ("creator", "operator"):
        return query
    return query.where(false())


async def insert_base(session: AsyncSession, values: dict[str, Any]) -> LiveBaseRecord:
    await run(session, _INSERT_BASE, {f"v_{column}": value for column, value in values.items()})
    return LiveBaseRecord(**values)


async def base_by_id(session: AsyncSession, base_id: str) -> LiveBaseRecord | None:
    row = (await run(session, _BASE, {"id": base_id})).first()
    return None if row is None else record_of(LiveBaseRecord, row)


async def base_with_clock(session: AsyncSession, base_id: str, *, with_clock: bool) -> tuple[LiveBaseRecord | None, int | None]:
    """The base (None if there is none) and, when asked, the test clock's offset (None without
    a base)."""
    row = (await run(session, _BASE_WITH_CLOCK[with_clock], {"id": base_id})).first()
    if row is None:
        return None, None
    return record_of(LiveBaseRecord, row), row.clock_offset if with_clock else None


async def bases_page(
    session: AsyncSession, role: str, account_id: str, *, limit: int, cursor: str | None
) -> Page[LiveBaseRecord]:
    return await keyset(session, _bases_visible_to(role, account_id), live_bases.c.id, LiveBaseRecord, limit=limit, cursor=cursor)


async def visible_base_with_agency(session: AsyncSession, role: str, account_id: str, base_id: str) -> BaseWithAgency | None:
    """The base if the caller may see it, with its agency's name and whether it is a head
    annual agency."""
    query = (
        _bases_visible_to(role, account_id)
        .add_columns(accounts.c.org_name.label("agency_name"), accounts.c.head_annual)
        .join(accounts, accounts.c.id == live_bases.c.agency_id)
        .where(live_bases.c.id == base_id)
    )
    row = (await run(session, query)).first()
    return None if row is None else BaseWithAgency(record_of(LiveBaseRecord, row), row.agency_name, bool(row.head_annual))


async def active_shops_of(session: AsyncSession, agency_id: str) -> list[ShopCardRecord]:
    return [record_of(ShopCardRecord, row) for row in await run(session, _ACTIVE_SHOPS, {"agency": agency_id})]


async def listed_products_of(session: AsyncSession, agency_id: str, limit: int) -> list[ProductRecord]:
    """The agency's listed pool products, latest listed item first."""
    rows = await run(session, _LISTED_PRODUCTS, {"agency": agency_id, "limit": limit})
    return [record_of(ProductRecord, row) for row in rows]


async def has_base(session: AsyncSession, agency_id: str) -> bool:
    return (await run(session, _BASE_OF_AGENCY, {"agency": agency_id})).first() is not None


# --------------------------------------------------------------------------- accounts
_LOCK_ACCOUNT = select(accounts.c.id, accounts.c.head_annual).where(accounts.c.id == bindparam("id")).with_for_update()


async def lock_account(session: AsyncSession, account_id: str) -> bool | None:
    """Lock an account's row (`FOR UPDATE` on PostgreSQL; SQLite serialises writers anyway), so
    the decisions about one agency or creator are taken one at a time. Whether it is a head
    annual agency; None when there is no such account."""
    row = (await run(session, _LOCK_ACCOUNT, {"id": account_id})).first()
    return None if row is None else bool(row.head_annual)


# --------------------------------------------------------------------------- bindings
_LIVE_COUNT = (
    select(func.count())
    .select_from(live_sessions)
    .where(
        live_sessions.c.host_id == creator_bindings.c.creator_id,
        live_sessions.c.started_at >= creator_bindings.c.began_at,
        or_(creator_bindings.c.ended_at.is_(None), live_sessions.c.started_at < creator_bindings.c.ended_at),
    )
    .scalar_subquery()
)
_OTHER_BINDING = creator_bindings.alias("other_binding")
_FACTS_COLUMNS = (
    creator_bindings.c.id,
    accounts.c.head_annual,
    case((creator_bindings.c.began_at.is_(None), null()), else_=_LIVE_COUNT).label("live_count"),
    # an invitation cannot be accepted while its creator is bound elsewhere (already_bound)
    case(
        (
            creator_bindings.c.state == "invited",
            select(_OTHER_BINDING.c.id)
            .where(
                _OTHER_BINDING.c.creator_id == creator_bindings.c.creator_id,
                _OTHER_BINDING.c.state == "active",
                _OTHER_BINDING.c.id != creator_bindings.c.id,
            )
            .limit(1)
            .scalar_subquery(),
        ),
        else_=null(),
    ).label("bound_elsewhere"),
)
_CREATOR_FACTS = {
    dialect: select(*_FACTS_COLUMNS)
    .join_from(creator_bindings, accounts, accounts.c.id == creator_bindings.c.agency_id)
    .where(among)
    for dialect, among in _ids_in(creator_bindings.c.id).items()
}


def _open_of_pair(table: Table, party: str) -> Select:
    return (
        select(table.c.id, table.c.state)
        .where(
            table.c.agency_id == bindparam("agency"),
            table.c[party] == bindparam("party"),
            or_(table.c.state == "active", and_(table.c.state == "invited", table.c.expires_at > bindparam("now"))),
        )
        .limit(1)
    )


_OPEN_OF_PAIR = {
    "creator_bindings": _open_of_pair(creator_bindings, "creator_id"),
    "shop_bindings": _open_of_pair(shop_bindings, "shop_id"),
}
_OTHER_ACTIVE = (
    select(creator_bindings.c.id)
    .where(
        creator_bindings.c.creator_id == bindparam("creator"),
        creator_bindings.c.state == "active",
        creator_bindings.c.id != bindparam("id"),
    )
    .limit(1)
)
_SET_COMMISSION = (
    update(creator_bindings)
    .where(
        creator_bindings.c.id == bindparam("b_id"),
        creator_bindings.c.state == "active",
        creator_bindings.c.version == bindparam("b_seen"),
    )
    .values(commission_bp=bindparam("b_bp"), version=creator_bindings.c.version + 1)
    .returning(*creator_bindings.c)
)
_PARTY = {"creator_bindings": ("creator_id", "creator"), "shop_bindings": ("shop_id", "merchant")}


def _bindings_visible_to(table: Table, role: str, account_id: str) -> ColumnElement[bool]:
    """The bindings a caller may see: an agency its own, the invited party (a creator, or a
    merchant for its shop) those it was invited to, an operator all."""
    party, party_role = _PARTY[table.name]
    if role == "agency":
        return table.c.agency_id == account_id
    if role == party_role:
        return table.c[party] == account_id
    return true() if role == "operator" else false()


async def binding(session: AsyncSession, table: Table, record: type[T], binding_id: str) -> T | None:
    return await entities.entity(session, table, record, binding_id)


async def bindings_page(
    session: AsyncSession,
    table: Table,
    record: type[T],
    role: str,
    account_id: str,
    *,
    state: str | None,
    limit: int,
    cursor: str | None,
) -> Page[T]:
    query = select(table).where(_bindings_visible_to(table, role, account_id))
    if state:
        query = query.where(table.c.state == state)
    return await keyset(session, query, table.c.id, record, limit=limit, cursor=cursor)


async def creator_binding_facts(session: AsyncSession, binding_ids: Sequence[str]) -> dict[str, CreatorBindingFacts]:
    """Strength and live count of creator bindings, in one statement for a page."""
    if not binding_ids:
        return {}
    rows = await run(session, _CREATOR_FACTS[dialect_of(session).name], {"ids": list(binding_ids)})
    return {row.id: CreatorBindingFacts(bool(row.head_annual), row.live_count, row.bound_elsewhere) for row in rows}


async def open_binding_of_pair(
    session: AsyncSession, table: Table, agency_id: str, party_id: str, now: datetime
) -> tuple[str, str] | None:
    """(id, state) of the pair's active binding or unexpired invitation, if any."""
    row = (await run(session, _OPEN_OF_PAIR[table.name], {"agency": agency_id, "party": party_id, "now": now})).first()
    return None if row is None else (row.id, row.state)


async def other_active_binding(session: AsyncSession, creator_id: str, binding_id: str) -> str | None:
    return (await run(session, _OTHER_ACTIVE, {"creator": creator_id, "id": binding_id})).scalar()


async def set_commission(
    session: AsyncSession, binding_id: str, seen_version: int, commission_bp: int
) -> CreatorBindingRecord | None:
    """The active binding with its new commission (its version steps like any change of the
    row); None when it is not active any more or changed since version `seen_version` was read."""
    row = (await run(session, _SET_COMMISSION, {"b_id": binding_id, "b_seen": seen_version, "b_bp": commission_bp})).first()
    return None if row is None else record_of(CreatorBindingRecord, row)


# --------------------------------------------------------------------------- the product pool
_POOL_VIEW = (
    select(
        pool_items.c.id,
        pool_items.c.agency_id,
        pool_items.c.qualifies,
        pool_items.c.listed,
        *[products.c[name].label(f"p_{name}") for name in _PRODUCT_FIELDS],
        accounts.c.shop_name,
        accounts.c.experience_score,
    )
    .join_from(pool_items, products, products.c.id == pool_items.c.product_id)
    .join(accounts, accounts.c.id == pool_items.c.shop_id)
)
_LOCK_POOL_ITEM = _POOL_VIEW.where(pool_items.c.id == bindparam("id")).with_for_update(of=pool_items)
_SET_LISTED = (
    update(pool_items)
    .where(pool_items.c.id == bindparam("b_id"))
    .values(listed=bindparam("b_listed"), updated_at=bindparam("b_at"))
)
_SHOP_PRODUCTS = (
    select(accounts.c.experience_score, *[products.c[name].label(f"p_{name}") for name in _PRODUCT_FIELDS])
    .select_from(accounts.outerjoin(products, products.c.shop_id == accounts.c.id))
    .where(accounts.c.id == bindparam("shop"))
    .order_by(products.c.id)
)
_BOUND_AGENCIES = (
    select(shop_bindings.c.agency_id, accounts.c.experience_score)
    .join_from(shop_bindings, accounts, accounts.c.id == shop_bindings.c.shop_id)
    .where(shop_bindings.c.shop_id == bindparam("shop"), shop_bindings.c.state == "active")
    .order_by(shop_bindings.c.agency_id)
)
_ITEMS_OF_SHOP = (
    select(pool_items.c.id, pool_items.c.qualifies, pool_items.c.listed, products.c.status, products.c.brand)
    .join_from(pool_items, products, products.c.id == pool_items.c.product_id)
    .where(pool_items.c.shop_id == bindparam("shop"))
    .order_by(pool_items.c.id)
)
_REQUALIFY = (
    update(pool_items)
    .where(pool_items.c.id == bindparam("b_id"))
    .values(
        qualifies=bindparam("b_qualifies", type_=Boolean),
        listed=and_(pool_items.c.listed, bindparam("b_qualifies", type_=Boolean)),
        updated_at=bindparam("b_at"),
    )
)
_UNPOOL_SHOP = delete(pool_items).where(pool_items.c.agency_id == bindparam("agency"), pool_items.c.shop_id == bindparam("shop"))
_FIRST_QUALIFYING = (
    select(pool_items.c.id)
    .where(pool_items.c.agency_id == bindparam("agency"), pool_items.c.qualifies.is_(True))
    .order_by(pool_items.c.id)
    .limit(1)
)


def _upsert_items(dialect_insert):
    """A product joins an agency's pool, or its item's qualification is brought up to date: an
    item that stops qualifying is unlisted; an unchanged one is left alone."""
    statement = dialect_insert(pool_items).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in pool_items.c})
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["agency_id", "product_id"],
        set_={"qualifies": new.qualifies, "listed": and_(pool_items.c.listed, new.qualifies), "updated_at": new.updated_at},
        where=or_(pool_items.c.qualifies != new.qualifies, and_(pool_items.c.listed, ~new.qualifies)),
    )


_UPSERT_ITEMS = {"postgresql": _upsert_items(pg_insert), "sqlite": _upsert_items(sqlite_insert)}


def _pool_view(row: Any) -> PoolItemView:
    mapping = row._mapping
    return PoolItemView(
        row.id,
        row.agency_id,
        row.qualifies,
        row.listed,
        ProductRecord(**{name: mapping[f"p_{name}"] for name in _PRODUCT_FIELDS}),
        ShopCardRecord(row.p_shop_id, row.shop_name, row.experience_score),
    )


async def pool_page(
    session: AsyncSession, agency_id: str, *, listed: bool | None, limit: int, cursor: str | None
) -> Page[PoolItemView]:
    """The agency's pool (an agency sees only its own)."""
    query = _POOL_VIEW.where(pool_items.c.agency_id == agency_id)
    if listed is not None:
        query = query.where(pool_items.c.listed.is_(listed))
    return await _page(session, query, pool_items.c.id, _pool_view, limit=limit, cursor=cursor)


async def lock_pool_item(session: AsyncSession, item_id: str) -> PoolItemView | None:
    row = (await run(session, _LOCK_POOL_ITEM, {"id": item_id})).first()
    return None if row is None else _pool_view(row)


async def set_listed(session: AsyncSession, item_id: str, listed: bool, now: datetime) -> None:
    await run(session, _SET_LISTED, {"b_id": item_id, "b_listed": listed, "b_at": now})


async def products_of_shop(session: AsyncSession, shop_id: str) -> tuple[bool, Decimal | None, list[ProductRecord]]:
    """(the shop exists, its experience score, its products)."""
    rows = (await run(session, _SHOP_PRODUCTS, {"shop": shop_id})).all()
    if not rows:
        return False, None, []
    found = [
        ProductRecord(**{name: row._mapping[f"p_{name}"] for name in _PRODUCT_FIELDS}) for row in rows if row.p_id is not None
    ]
    return True, rows[0].experience_score, found


async def agencies_bound_to(session: AsyncSession, shop_id: str) -> tuple[list[str], Decimal | None]:
    """The agencies the shop is actively bound to, and the shop's experience score."""
    rows = (await run(session, _BOUND_AGENCIES, {"shop": shop_id})).all()
    return [row.agency_id for row in rows], rows[0].experience_score if rows else None


async def upsert_pool_items(session: AsyncSession, items: list[dict[str, Any]]) -> None:
    """`items`: every column of `pool_items` (the id is used only by a new item)."""
    if items:
        await run(
            session,
            _UPSERT_ITEMS[dialect_of(session).name],
            [{f"v_{column}": value for column, value in item.items()} for item in items],
        )


async def pool_items_of_shop(session: AsyncSession, shop_id: str) -> list[PoolItemQualification]:
    return [record_of(PoolItemQualification, row) for row in await run(session, _ITEMS_OF_SHOP, {"shop": shop_id})]


async def requalify(session: AsyncSession, changes: list[tuple[str, bool]], now: datetime) -> None:
    """Set items' qualification ((item id, qualifies) pairs); an item that does not qualify is
    unlisted."""
    if changes:
        await run(
            session, _REQUALIFY, [{"b_id": item_id, "b_qualifies": qualifies, "b_at": now} for item_id, qualifies in changes]
        )


async def unpool_shop(session: AsyncSession, agency_id: str, shop_id: str) -> None:
    """The shop's products leave the agency's pool."""
    await run(session, _UNPOOL_SHOP, {"agency": agency_id, "shop": shop_id})


async def first_qualifying_item(session: AsyncSession, agency_id: str) -> str | None:
    return (await run(session, _FIRST_QUALIFYING, {"agency": agency_id})).scalar()


# --------------------------------------------------------------------------- check-ins, cooperations
_agencies = accounts.alias("agencies")
_STRONG_AGENCY = (
    select(creator_bindings.c.agency_id)
    .join_from(creator_bindings, _agencies, _agencies.c.id == creator_bindings.c.agency_id)
    .where(
        creator_bindings.c.creator_id == bindparam("creator"),
        creator_bindings.c.state == "active",
        _agencies.c.head_annual.is_(True),
    )
    .limit(1)
    .scalar_subquery()
)
_COOPERATING = and_(
    cooperations.c.creator_id == bindparam("creator"), cooperations.c.state == "active", cooperations.c.ends_at > bindparam("now")
)
_STANDING = select(
    accounts.c.level,
    _STRONG_AGENCY.label("strong_agency"),
    select(cooperations.c.id)
    .where(_COOPERATING, cooperations.c.base_id == bindparam("base"))
    .limit(1)
    .scalar_subquery()
    .label("cooperation_here"),
    exists().where(_COOPERATING, cooperations.c.base_id != bindparam("base")).label("elsewhere"),
    select(check_ins.c.id)
    .where(
        check_ins.c.creator_id == bindparam("creator"),
        check_ins.c.base_id == bindparam("base"),
        check_ins.c.state == "checked_in",
    )
    .limit(1)
    .scalar_subquery()
    .label("present"),
    # whether the scan must fire due timers first (a pending check-in's expiry, a cooperation's
    # end), so that the common scan needs no statement of its own for it. Any timer at all, as
    # fire_due's any_due asks: the due_at index's first entry (ordered by it, one row: a machine
    # filter made the planner read every check-in timer through the machine index)
    select(timers.c.id)
    .where(timers.c.due_at <= bindparam("now"))
    .order_by(timers.c.due_at)
    .limit(1)
    .scalar_subquery()
    .label("timer_due"),
).where(accounts.c.id == bindparam("creator"))
_PRESENT_OF_COOPERATION = (
    select(check_ins)
    .where(check_ins.c.cooperation_id == bindparam("cooperation"), check_ins.c.state == "checked_in")
    .order_by(check_ins.c.id)
)


def _visits_visible_to(table: Table, role: str, account_id: str) -> ColumnElement[bool]:
    """The check-ins or cooperations a caller may see: a creator's own, an agency's at its
    bases, an operator all."""
    if role == "agency":
        return table.c.agency_id == account_id
    if role == "creator":
        return table.c.creator_id == account_id
    return true() if role == "operator" else false()


async def standing_of(session: AsyncSession, creator_id: str, base_id: str, now: datetime) -> Standing | None:
    """What the check-in rules read about the creator at the base (None: no such account)."""
    row = (await run(session, _STANDING, {"creator": creator_id, "base": base_id, "now": now})).first()
    if row is None:
        return None
    return Standing(
        row.level, row.strong_agency, row.cooperation_here, bool(row.elsewhere), row.present, row.timer_due is not None
    )


async def check_in(session: AsyncSession, check_in_id: str) -> CheckInRecord | None:
    return await entities.entity(session, check_ins, CheckInRecord, check_in_id)


async def check_ins_page(
    session: AsyncSession, role: str, account_id: str, *, state: str | None, base_id: str | None, limit: int, cursor: str | None
) -> Page[CheckInRecord]:
    query = select(check_ins).where(_visits_visible_to(check_ins, role, account_id))
    if state:
        query = query.where(check_ins.c.state == state)
    if base_id:
        query = query.where(check_ins.c.base_id == base_id)
    return await keyset(session, query, check_ins.c.id, CheckInRecord, limit=limit, cursor=cursor)


_HOLD_ACTIVE_COOPERATIONS = (
    select(cooperations.c.id)
    .where(
        cooperations.c.creator_id == bindparam("creator"),
        cooperations.c.base_id == bindparam("base"),
        cooperations.c.state == "active",
    )
    .with_for_update(read=True)
)


async def hold_active_cooperations(session: AsyncSession, creator_id: str, base_id: str) -> None:
    """Share-lock the creator's active cooperations at the base until this transaction ends: a
    check-in confirmed under one cannot commit while the cooperation is being ended (the end
    waits, then checks out the check-ins it finds present), and one already ended is not
    returned (PostgreSQL rechecks the row after waiting for its updater)."""
    await run(session, _HOLD_ACTIVE_COOPERATIONS, {"creator": creator_id, "base": base_id})


_OVERDUE_COOPERATIONS = (
    select(cooperations.c.id)
    .where(
        cooperations.c.creator_id == bindparam("creator"),
        cooperations.c.state == "active",
        cooperations.c.ends_at <= bindparam("now"),
    )
    .order_by(cooperations.c.id)
)


async def overdue_cooperations_of(session: AsyncSession, creator_id: str, now: datetime) -> list[str]:
    """The creator's cooperations still active past `ends_at` (their `end` timer is due)."""
    return list((await run(session, _OVERDUE_COOPERATIONS, {"creator": creator_id, "now": now})).scalars())


async def present_check_ins_of(session: AsyncSession, cooperation_id: str) -> list[CheckInRecord]:
    """The check-ins under a cooperation that are checked in."""
    rows = await run(session, _PRESENT_OF_COOPERATION, {"cooperation": cooperation_id})
    return [record_of(CheckInRecord, row) for row in rows]


async def cooperation(session: AsyncSession, cooperation_id: str) -> CooperationRecord | None:
    return await entities.entity(session, cooperations, CooperationRecord, cooperation_id)


async def cooperations_page(
    session: AsyncSession, role: str, account_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page[CooperationRecord]:
    query = select(cooperations).where(_visits_visible_to(cooperations, role, account_id))
    if state:
        query = query.where(cooperations.c.state == state)
    return await keyset(session, query, cooperations.c.id, CooperationRecord, limit=limit, cursor=cursor)


# --------------------------------------------------------------------------- statistics
_o = sales_orders
_START: BindParameter[Any] = bindparam("start")
_END: BindParameter[Any] = bindparam("end")
_IN_POOL = exists().where(  # a bound shop's product while the shop binding was active
    shop_bindings.c.agency_id == bindparam("agency"),
    shop_bindings.c.shop_id == _o.c.shop_id,
    shop_bindings.c.began_at.is_not(None),
    shop_bindings.c.began_at <= _o.c.paid_at,
    or_(shop_bindings.c.ended_at.is_(None), _o.c.paid_at < shop_bindings.c.ended_at),
)
_BOUND = exists().where(  # sold by a creator bound to the agency then
    creator_bindings.c.agency_id == bindparam("agency"),
    creator_bindings.c.creator_id == _o.c.creator_id,
    creator_bindings.c.began_at.is_not(None),
    creator_bindings.c.began_at <= _o.c.paid_at,
    or_(creator_bindings.c.ended_at.is_(None), _o.c.paid_at < creator_bindings.c.ended_at),
)
_COOPERATED = exists().where(  # or cooperating with the base then
    cooperations.c.base_id == bindparam("base"),
    cooperations.c.creator_id == _o.c.creator_id,
    cooperations.c.started_at <= _o.c.paid_at,
    _o.c.paid_at < cooperations.c.ends_at,
    or_(cooperations.c.ended_at.is_(None), _o.c.paid_at < cooperations.c.ended_at),
)
_COUNTED = and_(_o.c.paid_at >= _START, _o.c.paid_at < _END, _o.c.creator_id.is_not(None), _IN_POOL, or_(_BOUND, _COOPERATED))
_GMV = func.coalesce(func.sum(case((_o.c.status == "paid", _o.c.amount_fen), else_=0)), 0)
_ORDERS = func.coalesce(func.sum(case((_o.c.status == "paid", 1), else_=0)), 0)
_CHECK_IN_COUNT = (
    select(func.count())
    .select_from(check_ins)
    .where(
        check_ins.c.base_id == bindparam("base"),
        check_ins.c.checked_in_at.is_not(None),
        check_ins.c.checked_in_at >= _START,
        check_ins.c.checked_in_at < _END,
    )
    .scalar_subquery()
)
_PRESENT_AT_SESSION = exists().where(  # its host was checked in at the base when it started
    check_ins.c.base_id == bindparam("base"),
    check_ins.c.creator_id == live_sessions.c.host_id,
    check_ins.c.checked_in_at.is_not(None),
    check_ins.c.checked_in_at <= live_sessions.c.started_at,
    or_(check_ins.c.checked_out_at.is_(None), live_sessions.c.started_at < check_ins.c.checked_out_at),
)
_SESSION_COUNT = (
    select(func.count())
    .select_from(live_sessions)
    .where(live_sessions.c.started_at >= _START, live_sessions.c.started_at < _END, _PRESENT_AT_SESSION)
    .scalar_subquery()
)
_TOTALS = (
    select(
        _GMV.label("gmv_fen"), _ORDERS.label("orders"), _CHECK_IN_COUNT.label("check_ins"), _SESSION_COUNT.label("live_sessions")
    )
    .select_from(_o)
    .where(_COUNTED)
)
_BY_CREATOR = (
    select(_o.c.creator_id.label("key"), accounts.c.nickname.label("name"), _GMV.label("gmv_fen"), _ORDERS.label("orders"))
    .join_from(_o, accounts, accounts.c.id == _o.c.creator_id)
    .where(_COUNTED)
    .group_by(_o.c.creator_id, accounts.c.nickname)
    .order_by(_GMV.desc(), _o.c.creator_id)
    .limit(100)
)
_BY_PRODUCT = (
    select(_o.c.product_id.label("key"), products.c.title.label("name"), _GMV.label("gmv_fen"), _ORDERS.label("orders"))
    .join_from(_o, products, products.c.id == _o.c.product_id)
    .where(_COUNTED)
    .group_by(_o.c.product_id, products.c.title)
    .order_by(_GMV.desc(), _o.c.product_id)
    .limit(100)
)


def _sales(row: Any) -> Sales:
    return Sales(row.key, row.name, int(row.gmv_fen), int(row.orders))


async def base_stats(session: AsyncSession, base: LiveBaseRecord, start: datetime, end: datetime) -> BaseStats:
    """基地数据 over [start, end): the alliance orders of pool products sold by creators bound to
    the base's agency or cooperating with the base, paid while that binding or cooperation was
    active (GMV and orders count paid ones), the check-ins at the base and the live sessions
    its checked-in creators started."""
    params = {"base": base.id, "agency": base.agency_id, "start": start, "end": end}
    totals = (await run(session, _TOTALS, params)).one()
    by_creator = [_sales(row) for row in await run(session, _BY_CREATOR, params)]
    by_product = [_sales(row) for row in await run(session, _BY_PRODUCT, params)]
    return BaseStats(
        int(totals.gmv_fen),
        int(totals.orders),
        int(totals.check_ins or 0),
        int(totals.live_sessions or 0),
        by_creator,
        by_product,
    )


prepare_module(globals())
