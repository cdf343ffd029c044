"""Statements of the incentives' monthly computation: set-based SQL over the facts (contracts,
live sessions, merchant tiers, sales orders), built once with bindparams for the month's
instants, and the bulk writes of its drafts and tier awards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, distinct, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.facts import LiveSession, MerchantTier, SalesOrder
from app.db.models.incentives import TierAward
from app.db.repositories._lists import in_list, per_dialect
from app.db.repositories._run import prepare_module, run
from app.db.repositories.incentives import accounts, contracts, statements
from app.db.session import dialect_of

tier_awards = table_of(TierAward)
live_sessions = table_of(LiveSession)
merchant_tiers = table_of(MerchantTier)
sales_orders = table_of(SalesOrder)

# Parameters of the computation's statements: ms, me (the month's start and the next month's,
# UTC instants), ps (the previous month's start), month, b1..b3 (the three months before),
# year, min_active (the program's minimum of active merchants).
_WORK_MEM = text("SET LOCAL work_mem = '64MB'")
_NO_JIT = text("SET LOCAL jit = off")


async def tune_for_batch(session: AsyncSession) -> None:
    """A batch over millions of orders, for this transaction only (PostgreSQL): hash the shops'
    sums in memory rather than spilling to disk (default work_mem 4MB), and skip JIT compilation
    (seconds of LLVM time on 2 cores for queries that are hashing-bound anyway)."""
    if dialect_of(session).name == "postgresql":
        await run(session, _WORK_MEM)
        await run(session, _NO_JIT)


_DELETE_MONTH_AWARDS = delete(tier_awards).where(
    tier_awards.c.statement_id.in_(
        select(statements.c.id).where(statements.c.program_id == bindparam("program"), statements.c.month == bindparam("month"))
    )
)


async def delete_month_awards(session: AsyncSession, program_id: str, month: str) -> None:
    """The dimension-2 records of the month's drafts (they are counted again)."""
    await run(session, _DELETE_MONTH_AWARDS, {"program": program_id, "month": month})


def _active_during():
    """A contract that was active at some instant of [ms, me)."""
    return and_(
        contracts.c.activated_at.is_not(None),
        contracts.c.activated_at < bindparam("me"),
        or_(contracts.c.ended_at.is_(None), contracts.c.ended_at > bindparam("ms")),
    )


def _active_at_end():
    """A contract active at the month's last instant: activated before the next month began
    and not ended before it."""
    return and_(
        contracts.c.activated_at.is_not(None),
        contracts.c.activated_at < bindparam("me"),
        or_(contracts.c.ended_at.is_(None), contracts.c.ended_at >= bindparam("me")),
    )


# providers with a contract active during the month, and how many of its merchants went live
_LIVE_MERCHANTS = (
    select(live_sessions.c.host_id.label("merchant_id"))
    .where(live_sessions.c.started_at >= bindparam("ms"), live_sessions.c.started_at < bindparam("me"))
    .distinct()
    .cte("live_merchants")
)
_PER_PROVIDER = (
    select(contracts.c.provider_id, func.count(distinct(_LIVE_MERCHANTS.c.merchant_id)).label("active"))
    .select_from(contracts)
    .outerjoin(_LIVE_MERCHANTS, _LIVE_MERCHANTS.c.merchant_id == contracts.c.merchant_id)
    .where(_active_during())
    .group_by(contracts.c.provider_id)
    .cte("per_provider")
)
_PROVIDERS = (
    select(_PER_PROVIDER.c.provider_id, _PER_PROVIDER.c.active, accounts.c.certified)
    .join(accounts, accounts.c.id == _PER_PROVIDER.c.provider_id)
    .order_by(_PER_PROVIDER.c.provider_id)
)
_ELIGIBLE = (
    select(_PER_PROVIDER.c.provider_id)
    .join(accounts, accounts.c.id == _PER_PROVIDER.c.provider_id)
    .where(accounts.c.certified.is_(True), _PER_PROVIDER.c.active >= bindparam("min_active"))
    .cte("eligible")
)

# dimension 1: one provider per merchant (the earliest-activated commission_split contract)
_D1_CONTRACTS = (
    select(
        contracts.c.provider_id,
        contracts.c.merchant_id,
        func.row_number()
        .over(partition_by=contracts.c.merchant_id, order_by=(contracts.c.activated_at, contracts.c.id))
        .label("rn"),
    )
    .join(_ELIGIBLE, _ELIGIBLE.c.provider_id == contracts.c.provider_id)
    .where(contracts.c.mode == "commission_split", _active_at_end())
    .cte("d1_contracts")
)
_D1 = select(_D1_CONTRACTS.c.provider_id, _D1_CONTRACTS.c.merchant_id).where(_D1_CONTRACTS.c.rn == 1).cte("d1")
_IN_MONTH = sales_orders.c.paid_at >= bindparam("ms")
# One pass over the two months' live orders, grouped by shop, then joined to d1's merchants.
# Not `shop_id IN (d1)`: the planner estimates d1's `rn = 1` at one row and probes the index
# per merchant with random heap reads (minutes at 10M orders); a semi-join on a superset costs a
# second hash lookup per order. Grouping every shop's orders is one hash lookup per order, and
# the outer join keeps d1's merchants only.
_GMV = (
    select(
        sales_orders.c.shop_id,
        func.sum(case((_IN_MONTH, sales_orders.c.amount_fen), else_=0)).label("gmv"),
        func.sum(case((_IN_MONTH, 0), else_=sales_orders.c.amount_fen)).label("gmv_prev"),
    )
    .where(
        sales_orders.c.channel == "live",
        sales_orders.c.status == "paid",
        sales_orders.c.paid_at >= bindparam("ps"),
        sales_orders.c.paid_at < bindparam("me"),
    )
    .group_by(sales_orders.c.shop_id)
    .cte("gmv")
)
_DIMENSION1 = (
    select(
        _D1.c.provider_id,
        _D1.c.merchant_id,
        func.coalesce(_GMV.c.gmv, 0).label("gmv_fen"),
        func.coalesce(_GMV.c.gmv_prev, 0).label("gmv_prev_fen"),
    )
    .outerjoin(_GMV, _GMV.c.shop_id == _D1.c.merchant_id)
    .order_by(_D1.c.provider_id, _D1.c.merchant_id)
)

# dimension 2: the first jump to V3/V4 after three months of V0–V2 or absence, once a year
_EARLIER = merchant_tiers.alias("earlier")
_JUMPS = (
    select(merchant_tiers.c.merchant_id, merchant_tiers.c.tier)
    .where(
        merchant_tiers.c.month == bindparam("month"),
        merchant_tiers.c.tier >= 3,
        ~exists().where(
            _EARLIER.c.merchant_id == merchant_tiers.c.merchant_id,
            _EARLIER.c.month.in_([bindparam("b1"), bindparam("b2"), bindparam("b3")]),
            _EARLIER.c.tier >= 3,
        ),
        ~exists().where(tier_awards.c.merchant_id == merchant_tiers.c.merchant_id, tier_awards.c.year == bindparam("year")),
    )
    .cte("jumps")
)
_D2_CONTRACTS = (
    select(
        contracts.c.provider_id,
        contracts.c.merchant_id,
        _JUMPS.c.tier,
        func.row_number()
        .over(partition_by=contracts.c.merchant_id, order_by=(contracts.c.activated_at, contracts.c.id))
        .label("rn"),
    )
    .join(_JUMPS, _JUMPS.c.merchant_id == contracts.c.merchant_id)
    .join(_ELIGIBLE, _ELIGIBLE.c.provider_id == contracts.c.provider_id)
    .where(_active_during())
    .cte("d2_contracts")
)
_DIMENSION2 = (
    select(_D2_CONTRACTS.c.provider_id, _D2_CONTRACTS.c.merchant_id, _D2_CONTRACTS.c.tier)
    .where(_D2_CONTRACTS.c.rn == 1)
    .order_by(_D2_CONTRACTS.c.provider_id, _D2_CONTRACTS.c.merchant_id)
)


@dataclass(frozen=True, slots=True)
class MonthWindow:
    """The instants and months one computation reads."""

    month: str
    year: int
    start: datetime  # 00:00 of the month's first day (Asia/Shanghai), UTC
    end: datetime  # the next month's start
    previous_start: datetime
    months_before: tuple[str, str, str]
    min_active: int

    def params(self) -> dict[str, Any]:
        b1, b2, b3 = self.months_before
        return {
            "month": self.month,
            "year": self.year,
            "ms": self.start,
            "me": self.end,
            "ps": self.previous_start,
            "b1": b1,
            "b2": b2,
            "b3": b3,
            "min_active": self.min_active,
        }


@dataclass(frozen=True, slots=True)
class ProviderActivity:
    provider_id: str
    active: int
    certified: bool | None


@dataclass(frozen=True, slots=True)
class GmvLine:
    provider_id: str
    merchant_id: str
    gmv_fen: int
    gmv_prev_fen: int


@dataclass(frozen=True, slots=True)
class TierJump:
    provider_id: str
    merchant_id: str
    tier: int


async def providers_active_in(session: AsyncSession, window: MonthWindow) -> list[ProviderActivity]:
    """Providers with a contract active during the month, with their merchants that went live."""
    rows = await run(session, _PROVIDERS, window.params())
    return [ProviderActivity(row.provider_id, int(row.active), row.certified) for row in rows]


async def dimension1_lines(session: AsyncSession, window: MonthWindow) -> list[GmvLine]:
    """Each eligible provider's dimension-1 merchants with their live GMV this month and the one before."""
    rows = await run(session, _DIMENSION1, window.params())
    return [GmvLine(row.provider_id, row.merchant_id, int(row.gmv_fen), int(row.gmv_prev_fen)) for row in rows]


async def dimension2_jumps(session: AsyncSession, window: MonthWindow) -> list[TierJump]:
    """Each eligible provider's merchants that jumped to V3/V4 this month, not yet counted this year."""
    rows = await run(session, _DIMENSION2, window.params())
    return [TierJump(row.provider_id, row.merchant_id, int(row.tier)) for row in rows]


_DRAFT_COLUMNS = ("eligible", "reasons", "active_merchants", "dimension1", "dimension2", "total_fen", "computed_at")
_INSERT_STATEMENT = insert(statements).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in statements.c})
_UPDATE_DRAFT = (
    update(statements)
    .where(statements.c.id == bindparam("d_id"))
    .values({**{c: bindparam(f"d_{c}", type_=statements.c[c].type) for c in _DRAFT_COLUMNS}, "version": statements.c.version + 1})
)
_INSERT_AWARD = insert(tier_awards).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in tier_awards.c})
_DELETE_STATEMENTS = per_dialect(lambda d: delete(statements).where(in_list(statements.c.id, "ids", d)))


async def insert_statements(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New statements (every column): one executemany (their JSON columns hold lists, which an
    array parameter would take for a second dimension)."""
    if rows:
        await run(session, _INSERT_STATEMENT, [{f"v_{k}": v for k, v in row.items()} for row in rows])


async def update_drafts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New figures for drafts this transaction holds locked (`id` and the draft columns); each
    version steps once."""
    if rows:
        await run(session, _UPDATE_DRAFT, [{f"d_{k}": v for k, v in row.items()} for row in rows])


async def insert_awards(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await run(session, _INSERT_AWARD, [{f"v_{k}": v for k, v in row.items()} for row in rows])


async def delete_statements(session: AsyncSession, ids: list[str]) -> None:
    if ids:
        await run(session, _DELETE_STATEMENTS[dialect_of(session).name], {"ids": ids})


prepare_module(globals())
