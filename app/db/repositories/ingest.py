"""Statements on the facts the upstream systems push: `sales_orders`, `live_sessions` and
`merchant_tiers`, each found by its natural key (external id; merchant and month)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from app.db.base import id_for, table_of
from app.db.models.facts import LiveSession, MerchantTier, SalesOrder
from app.db.repositories._run import prepare_module, record_of, run

sales_orders = table_of(SalesOrder)
live_sessions = table_of(LiveSession)
merchant_tiers = table_of(MerchantTier)


@dataclass(frozen=True, slots=True)
class SalesOrderRecord:
    id: str
    external_id: str
    shop_id: str
    product_id: str
    creator_id: str | None
    channel: str
    live_session_id: str | None
    amount_fen: int
    status: str
    paid_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class LiveSessionRecord:
    id: str
    external_id: str
    host_id: str
    started_at: datetime
    ended_at: datetime | None
    peak_viewers: int
    room_url: str


@dataclass(frozen=True, slots=True)
class MerchantTierRecord:
    id: str
    merchant_id: str
    month: str
    tier: int


def _names(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


def _insert(table: Table, names: Sequence[str]):
    return insert(table).values({n: bindparam(f"v_{n}", type_=table.c[n].type) for n in names})


def _update(table: Table, names: Sequence[str]):
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({n: bindparam(f"new_{n}", type_=table.c[n].type) for n in names})
    )


def _new(record: type, model: type, defaults: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    """A record of a row to insert: a new id, the ORM's scalar column defaults (which Core
    inserts do not apply), then `values`."""
    return record(**{**defaults, **values, "id": id_for(model)})


def _defaults(table: Table) -> dict[str, Any]:
    return {c.key: c.default.arg for c in table.c if isinstance(c.default, ScalarElementColumnDefault)}


# ------------------------------------------------------------------------------- sales orders
_ORDER_NAMES = _names(SalesOrderRecord)
# every column the upstream system sets, and updated_at: what a later push rewrites
ORDER_REWRITTEN = tuple(n for n in _ORDER_NAMES if n not in ("id", "external_id"))
# in id order: two pushes with common orders lock them in the same order (no deadlock)
_LOCK_ORDERS = (
    select(*[sales_orders.c[n] for n in _ORDER_NAMES])
    .where(sales_orders.c.external_id.in_(bindparam("external_ids", expanding=True)))
    .order_by(sales_orders.c.id)
    .with_for_update()
)
_ORDER_DEFAULTS = _defaults(sales_orders)
_INSERT_ORDER = _insert(sales_orders, _ORDER_NAMES)
_UPDATE_ORDER = _update(sales_orders, ORDER_REWRITTEN)

# ------------------------------------------------------------------------------ live sessions
_SESSION_NAMES = _names(LiveSessionRecord)
_SESSION_DEFAULTS = _defaults(live_sessions)
_SESSIONS_BY_REF = select(live_sessions.c.id, live_sessions.c.external_id).where(
    or_(
        live_sessions.c.id.in_(bindparam("ids", expanding=True)),
        live_sessions.c.external_id.in_(bindparam("external_ids", expanding=True)),
    )
)
_LOCK_SESSION = (
    select(*[live_sessions.c[n] for n in _SESSION_NAMES])
    .where(live_sessions.c.external_id == bindparam("external_id"))
    .with_for_update()
)
_INSERT_SESSION = _insert(live_sessions, _SESSION_NAMES)
_SESSION_REWRITTEN = ("started_at", "ended_at", "peak_viewers", "room_url")
_UPDATE_SESSION = _update(live_sessions, _SESSION_REWRITTEN)

# ----------------------------------------------------------------------------- merchant tiers
_TIER_NAMES = _names(MerchantTierRecord)
_TIERS_OF_MONTH = select(*[merchant_tiers.c[n] for n in _TIER_NAMES]).where(
    merchant_tiers.c.month == bindparam("month"), merchant_tiers.c.merchant_id.in_(bindparam("merchant_ids", expanding=True))
)
_TIER_DEFAULTS = _defaults(merchant_tiers)
_INSERT_TIER = _insert(merchant_tiers, _TIER_NAMES)
_UPDATE_TIER = _update(merchant_tiers, ("tier",))


async def lock_sales_orders(session: AsyncSession, external_ids: Iterable[str]) -> dict[str, SalesOrderRecord]:
    """The orders of `external_ids` that exist (by external id), their rows locked."""
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}
    result = await run(session, _LOCK_ORDERS, {"external_ids": wanted})
    return {row.external_id: record_of(SalesOrderRecord, row) for row in result}


def new_sales_order(values: Mapping[str, Any]) -> SalesOrderRecord:
    """The record of an order to insert: `values` (every column but the id) and a new id."""
    return _new(SalesOrderRecord, SalesOrder, _ORDER_DEFAULTS, values)


async def insert_sales_orders(session: AsyncSession, orders: Sequence[SalesOrderRecord]) -> None:
    """Insert the `new_sales_order`s, in one executemany."""
    if orders:
        await run(session, _INSERT_ORDER, [{f"v_{k}": v for k, v in asdict(o).items()} for o in orders])


async def update_sales_orders(session: AsyncSession, orders: Sequence[SalesOrderRecord]) -> None:
    """Rewrite the `ORDER_REWRITTEN` columns of `orders` (locked by the caller)."""
    if orders:
        await run(
            session, _UPDATE_ORDER, [{"row_id": o.id, **{f"new_{n}": getattr(o, n) for n in ORDER_REWRITTEN}} for o in orders]
        )


async def live_session_ids_by_ref(session: AsyncSession, refs: Iterable[str]) -> dict[str, str]:
    """Each of `refs` that names a live session, by its id or its upstream external id -> the id."""
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    found: dict[str, str] = {}
    for live_session_id, external_id in await run(session, _SESSIONS_BY_REF, {"ids": wanted, "external_ids": wanted}):
        found[live_session_id] = live_session_id
        found[external_id] = live_session_id
    return found


async def lock_live_session(session: AsyncSession, external_id: str) -> LiveSessionRecord | None:
    """The live session of `external_id`, its row locked (`FOR UPDATE`)."""
    row = (await run(session, _LOCK_SESSION, {"external_id": external_id})).first()
    return None if row is None else record_of(LiveSessionRecord, row)


async def insert_live_session(session: AsyncSession, values: Mapping[str, Any]) -> LiveSessionRecord:
    """A new live session of `values` (columns; the id is generated), as written."""
    record = _new(LiveSessionRecord, LiveSession, _SESSION_DEFAULTS, values)
    await run(session, _INSERT_SESSION, {f"v_{k}": v for k, v in asdict(record).items()})
    return record


async def update_live_session(session: AsyncSession, live_session: LiveSessionRecord) -> None:
    """Rewrite what a later push of the session may change (times, peak, room) (locked by the
    caller)."""
    await run(
        session,
        _UPDATE_SESSION,
        {"row_id": live_session.id, **{f"new_{n}": getattr(live_session, n) for n in _SESSION_REWRITTEN}},
    )


async def tiers_of_month(session: AsyncSession, month: str, merchant_ids: Iterable[str]) -> dict[str, MerchantTierRecord]:
    """merchant id -> its tier of `month`, for those of `merchant_ids` that have one."""
    wanted = sorted(set(merchant_ids))
    if not wanted:
        return {}
    result = await run(session, _TIERS_OF_MONTH, {"month": month, "merchant_ids": wanted})
    return {row.merchant_id: record_of(MerchantTierRecord, row) for row in result}


async def insert_tiers(session: AsyncSession, month: str, tiers: Mapping[str, int]) -> None:
    """A tier of `month` for each merchant (merchant id -> tier)."""
    if tiers:
        await run(
            session,
            _INSERT_TIER,
            [
                {
                    f"v_{k}": v
                    for k, v in asdict(
                        _new(
                            MerchantTierRecord,
                            MerchantTier,
                            _TIER_DEFAULTS,
                            {"merchant_id": merchant_id, "month": month, "tier": tier},
                        )
                    ).items()
                }
                for merchant_id, tier in tiers.items()
            ],
        )


async def update_tiers(session: AsyncSession, tiers: Mapping[str, int]) -> None:
    """Set the tier of each merchant-tier row (id -> tier)."""
    if tiers:
        await run(session, _UPDATE_TIER, [{"row_id": row_id, "new_tier": tier} for row_id, tier in tiers.items()])


prepare_module(globals())
