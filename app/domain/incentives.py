"""Service-provider incentives (直播服务商激励): contracts, programs, the monthly computation,
publication with vouchers, and redemption. Choices where the spec is silent: docs/incentives.md."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import and_, case, delete, distinct, func, literal, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.accounts import Account
from app.db.models.facts import LiveSession, MerchantTier, SalesOrder
from app.db.models.incentives import (
    Holiday,
    IncentiveProgram,
    IncentiveStatement,
    ProviderContract,
    Redemption,
    TierAward,
    Voucher,
)
from app.db.pagination import keyset_page
from app.demo import DEMO_STEPS
from app.domain import clock
from app.domain.errors import Conflict, NotFound, ValidationFailed
from app.domain.exports import csv_bytes, xlsx_bytes
from app.domain.schemas import Strict
from app.state.core import SYSTEM, Actor, history
from app.state.incentive_statement import INCENTIVE_STATEMENT
from app.state.provider_contract import PROVIDER_CONTRACT
from app.state.redemption import REDEMPTION
from app.state.timers import fire_due, on_timer, schedule
from app.state.voucher import VOUCHER

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
VOUCHER_DAYS = 30
NOTICE_WORKING_DAYS = 3


# -- calendar helpers --------------------------------------------------------------------------
def parse_month(month: str) -> tuple[int, int]:
    try:
        year, mon = int(month[:4]), int(month[5:7])
        if len(month) != 7 or month[4] != "-" or not 1 <= mon <= 12 or year < 1:
            raise ValueError
    except ValueError:
        raise ValidationFailed("month must be YYYY-MM", loc=["path", "month"]) from None
    return year, mon


def shift_month(month: str, delta: int) -> str:
    year, mon = parse_month(month)
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_start(month: str) -> datetime:
    """00:00 Asia/Shanghai of the month's first day, as a UTC instant."""
    year, mon = parse_month(month)
    return clock.local_midnight(date(year, mon, 1))


def voucher_expiry(published_at: datetime) -> datetime:
    """The earlier of 30 days after publication and the 10th of the month following the
    publication's month, 00:00 Asia/Shanghai."""
    local = clock.local_date(published_at)
    following = shift_month(f"{local.year:04d}-{local.month:02d}", 1)
    tenth = clock.local_midnight(date(int(following[:4]), int(following[5:]), 10))
    return min(published_at + timedelta(days=VOUCHER_DAYS), tenth)


async def working_days_between(session: AsyncSession, after: date, until: date, *, enough: int) -> int:
    """Working days (Mon–Fri minus holidays) in (after, until], counted up to `enough`."""
    if until <= after:
        return 0
    holidays = set(await session.scalars(select(Holiday.day).where(Holiday.day > after, Holiday.day <= until)))
    count, day = 0, after
    while day < until and count < enough:
        day += timedelta(days=1)
        count += day.weekday() < 5 and day not in holidays
    return count


# -- schemas -----------------------------------------------------------------------------------
class ContractMode(StrEnum):
    commission_split = "commission_split"
    service_fee = "service_fee"


class ContractCreate(Strict):
    merchant_id: str = Field(max_length=40)
    mode: ContractMode


class EndIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class RedemptionRejectIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class ContractOut(BaseModel):
    id: str
    provider_id: str
    merchant_id: str
    mode: ContractMode
    state: str
    version: int
    allowed_actions: list[str]
    created_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class ProgramCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    month_from: str = Field(pattern=MONTH_PATTERN)
    month_to: str = Field(pattern=MONTH_PATTERN)
    coefficient_bp: int = Field(default=1000, ge=0, le=10000, description="dimension-1 coefficient (10% = 1000)")
    v3_reward_fen: int = Field(default=300_000, ge=0, le=10**12)
    v4_reward_fen: int = Field(default=1_000_000, ge=0, le=10**12)
    min_active_merchants: int = Field(default=3, ge=0, le=10**6)

    @model_validator(mode="after")
    def _ordered(self) -> ProgramCreate:
        if self.month_to < self.month_from:
            raise ValueError("month_to is before month_from")
        return self


class ProgramOut(BaseModel):
    id: str
    name: str
    month_from: str
    month_to: str
    coefficient_bp: int
    v3_reward_fen: int
    v4_reward_fen: int
    min_active_merchants: int
    created_at: datetime


class Dimension1Line(BaseModel):
    merchant_id: str
    gmv_prev_fen: int
    gmv_fen: int
    increment_fen: int
    voucher_fen: int


class Dimension2Line(BaseModel):
    merchant_id: str
    tier: int
    reward_fen: int


class StatementOut(BaseModel):
    id: str
    program_id: str
    provider_id: str
    month: str
    state: str
    version: int
    allowed_actions: list[str]
    eligible: bool
    reasons: list[str]
    active_merchants: int
    dimension1: list[Dimension1Line]
    dimension2: list[Dimension2Line]
    total_fen: int
    computed_at: datetime
    published_at: datetime | None


class MonthResult(BaseModel):
    program_id: str
    month: str
    statements: int
    eligible: int
    total_fen: int
    vouchers: int = 0


class VoucherOut(BaseModel):
    id: str
    provider_id: str
    program_id: str
    month: str
    dimension: int
    merchant_id: str | None
    amount_fen: int
    remaining_fen: int
    issued_at: datetime
    expires_at: datetime
    state: str
    version: int
    allowed_actions: list[str]


class RedemptionCreate(Strict):
    merchant_id: str = Field(max_length=40)
    amount_fen: int = Field(ge=1, le=10**13)
    use_date: date


class RedemptionOut(BaseModel):
    id: str
    voucher_id: str
    provider_id: str
    merchant_id: str
    amount_fen: int
    use_date: date
    state: str
    version: int
    allowed_actions: list[str]
    requested_at: datetime
    redeemed_at: datetime | None
    reject_reason: str | None


class HolidaysIn(Strict):
    dates: list[date] = Field(max_length=1000)

    @field_validator("dates")
    @classmethod
    def _unique(cls, dates: list[date]) -> list[date]:
        return sorted(set(dates))


class HolidaysOut(BaseModel):
    dates: list[date]


# -- representations ---------------------------------------------------------------------------
def contract_out(row: ProviderContract, actor: Actor, now: datetime) -> ContractOut:
    return ContractOut(id=row.id, provider_id=row.provider_id, merchant_id=row.merchant_id,
                       mode=ContractMode(row.mode), state=row.state, version=row.version,
                       allowed_actions=PROVIDER_CONTRACT.allowed_actions(row, actor, now),
                       created_at=row.created_at, activated_at=row.activated_at, ended_at=row.ended_at,
                       end_reason=row.end_reason)


def program_out(row: IncentiveProgram) -> ProgramOut:
    return ProgramOut.model_validate(row, from_attributes=True)


def statement_out(row: IncentiveStatement, actor: Actor, now: datetime) -> StatementOut:
    return StatementOut(id=row.id, program_id=row.program_id, provider_id=row.provider_id, month=row.month,
                        state=row.state, version=row.version,
                        allowed_actions=INCENTIVE_STATEMENT.allowed_actions(row, actor, now),
                        eligible=row.eligible, reasons=list(row.reasons), active_merchants=row.active_merchants,
                        dimension1=row.dimension1, dimension2=row.dimension2, total_fen=row.total_fen,
                        computed_at=row.computed_at, published_at=row.published_at)


def voucher_out(row: Voucher, actor: Actor, now: datetime) -> VoucherOut:
    return VoucherOut(id=row.id, provider_id=row.provider_id, program_id=row.program_id, month=row.month,
                      dimension=row.dimension, merchant_id=row.merchant_id, amount_fen=row.amount_fen,
                      remaining_fen=row.remaining_fen, issued_at=row.issued_at, expires_at=row.expires_at,
                      state=row.state, version=row.version,
                      allowed_actions=VOUCHER.allowed_actions(row, actor, now))


def redemption_out(row: Redemption, actor: Actor, now: datetime) -> RedemptionOut:
    return RedemptionOut(id=row.id, voucher_id=row.voucher_id, provider_id=row.provider_id,
                         merchant_id=row.merchant_id, amount_fen=row.amount_fen, use_date=row.use_date,
                         state=row.state, version=row.version,
                         allowed_actions=REDEMPTION.allowed_actions(row, actor, now),
                         requested_at=row.requested_at, redeemed_at=row.redeemed_at,
                         reject_reason=row.reject_reason)


# -- contracts ---------------------------------------------------------------------------------
def _sees_contract(row: ProviderContract, actor: Actor) -> bool:
    return actor.role == "operator" or actor.id in (row.provider_id, row.merchant_id)


async def create_contract(session: AsyncSession, actor: Actor, body: ContractCreate) -> ContractOut:
    now = await clock.now(session)
    merchant = await session.get(Account, body.merchant_id)
    if merchant is None or merchant.role != "merchant":
        raise ValidationFailed("unknown merchant", loc=["body", "merchant_id"])
    live = await session.scalar(select(ProviderContract.id).where(
        ProviderContract.provider_id == actor.id, ProviderContract.merchant_id == body.merchant_id,
        ProviderContract.state.in_(("proposed", "active"))))
    if live is not None:
        raise Conflict("a proposed or active contract with this merchant exists", code="contract_exists",
                       contract_id=live)
    row = ProviderContract(provider_id=actor.id, merchant_id=body.merchant_id, mode=body.mode.value,
                           created_at=now)
    try:
        async with session.begin_nested():
            await PROVIDER_CONTRACT.create(session, row, actor, now=now)
    except IntegrityError:  # a concurrent proposal for the same pair won
        raise Conflict("a proposed or active contract with this merchant exists", code="contract_exists") from None
    return contract_out(row, actor, now)


async def _visible_contract(session: AsyncSession, actor: Actor, contract_id: str) -> ProviderContract:
    row = await session.get(ProviderContract, contract_id)
    if row is None or not _sees_contract(row, actor):
        raise NotFound("no such contract")
    return row


async def get_contract(session: AsyncSession, actor: Actor, contract_id: str) -> ContractOut:
    row = await _visible_contract(session, actor, contract_id)
    return contract_out(row, actor, await clock.now(session))


async def contract_history(session: AsyncSession, actor: Actor, contract_id: str):
    await _visible_contract(session, actor, contract_id)
    return await history(session, PROVIDER_CONTRACT.name, contract_id)


async def list_contracts(session: AsyncSession, actor: Actor, *, state: str | None, limit: int,
                         cursor: str | None) -> tuple[list[ContractOut], str | None]:
    query = select(ProviderContract)
    if actor.role == "service_provider":
        query = query.where(ProviderContract.provider_id == actor.id)
    elif actor.role == "merchant":
        query = query.where(ProviderContract.merchant_id == actor.id)
    if state:
        query = query.where(ProviderContract.state == state)
    rows, next_cursor = await keyset_page(session, query, ProviderContract.id, limit=limit, cursor=cursor)
    now = await clock.now(session)
    return [contract_out(r, actor, now) for r in rows], next_cursor


async def act_on_contract(session: AsyncSession, actor: Actor, contract_id: str, action: str,
                          reason: str | None = None) -> ContractOut:
    now = await clock.now(session)
    row = await PROVIDER_CONTRACT.load_locked(session, contract_id)
    if not _sees_contract(row, actor):
        raise NotFound("no such contract")
    await PROVIDER_CONTRACT.fire(session, row, action, actor, now=now, reason=reason)
    if action == "accept":
        row.activated_at = now
    elif action == "end":
        row.ended_at = now
        row.end_reason = reason
    await session.flush()
    return contract_out(row, actor, now)


# -- programs ----------------------------------------------------------------------------------
async def create_program(session: AsyncSession, body: ProgramCreate) -> ProgramOut:
    row = IncentiveProgram(**body.model_dump(), created_at=await clock.now(session))
    session.add(row)
    await session.flush()
    return program_out(row)


async def list_programs(session: AsyncSession, *, limit: int, cursor: str | None):
    rows, next_cursor = await keyset_page(session, select(IncentiveProgram), IncentiveProgram.id,
                                          limit=limit, cursor=cursor)
    return [program_out(r) for r in rows], next_cursor


async def _program_for_month(session: AsyncSession, program_id: str, month: str) -> IncentiveProgram:
    parse_month(month)
    program = await session.scalar(select(IncentiveProgram).where(IncentiveProgram.id == program_id)
                                   .with_for_update())  # serialises compute and publish of a program
    if program is None:
        raise NotFound("no such program")
    if not program.month_from <= month <= program.month_to:
        raise ValidationFailed(f"{month} is outside the program ({program.month_from}..{program.month_to})",
                               loc=["path", "month"], code="month_outside_program")
    return program


# -- the monthly computation -------------------------------------------------------------------
Progress = Callable[[int, int], Any]


def _active_during(ms: datetime, me: datetime):
    """A contract that was active at some instant of [ms, me)."""
    return and_(ProviderContract.activated_at.is_not(None), ProviderContract.activated_at < me,
                or_(ProviderContract.ended_at.is_(None), ProviderContract.ended_at > ms))


def _active_at_end(me: datetime):
    """A contract active at the month's last instant: activated before the next month began
    and not ended before it."""
    return and_(ProviderContract.activated_at.is_not(None), ProviderContract.activated_at < me,
                or_(ProviderContract.ended_at.is_(None), ProviderContract.ended_at >= me))


async def compute_month(session: AsyncSession, program_id: str, month: str,
                        progress: Progress | None = None) -> MonthResult:
    """Compute (or recompute) every provider's draft statement of `month` with set-based SQL.
    `progress(done, total)` is called while the statements are written (for a CLI bar)."""
    now = await clock.now(session)
    program = await _program_for_month(session, program_id, month)
    ms, me = month_start(month), month_start(shift_month(month, 1))
    ps = month_start(shift_month(month, -1))
    if now < me:
        raise Conflict(f"{month} is not over yet", code="month_not_over")
    existing = {s.provider_id: s for s in await session.scalars(
        select(IncentiveStatement).where(IncentiveStatement.program_id == program_id,
                                         IncentiveStatement.month == month).with_for_update())}
    if any(s.state == "published" for s in existing.values()):
        raise Conflict(f"{month} is already published", code="month_published")
    if session.bind.dialect.name == "postgresql":
        # A batch over millions of orders, for this transaction only: hash the shops' sums in
        # memory rather than spilling to disk (default work_mem 4MB), and skip JIT compilation
        # (seconds of LLVM time on 2 cores for queries that are hashing-bound anyway).
        await session.execute(text("SET LOCAL work_mem = '64MB'"))
        await session.execute(text("SET LOCAL jit = off"))
    if existing:  # the drafts' dimension-2 counts are recomputed
        await session.execute(delete(TierAward).where(
            TierAward.statement_id.in_([s.id for s in existing.values()])))

    # providers with a contract active during the month, and their merchants who went live
    live_merchants = (select(LiveSession.host_id.label("merchant_id"))
                      .where(LiveSession.started_at >= ms, LiveSession.started_at < me)
                      .distinct().cte("live_merchants"))
    per_provider = (
        select(ProviderContract.provider_id,
               func.count(distinct(live_merchants.c.merchant_id)).label("active"))
        .select_from(ProviderContract)
        .outerjoin(live_merchants, live_merchants.c.merchant_id == ProviderContract.merchant_id)
        .where(_active_during(ms, me))
        .group_by(ProviderContract.provider_id).cte("per_provider"))
    providers = (await session.execute(
        select(per_provider.c.provider_id, per_provider.c.active, Account.certified)
        .join(Account, Account.id == per_provider.c.provider_id))).all()
    eligible_ids = {p.provider_id for p in providers
                    if p.certified and p.active >= program.min_active_merchants}
    eligible_cte = (select(per_provider.c.provider_id).join(Account, Account.id == per_provider.c.provider_id)
                    .where(Account.certified.is_(True),
                           per_provider.c.active >= program.min_active_merchants).cte("eligible"))

    # dimension 1: one provider per merchant (the earliest-activated commission_split contract)
    d1_contracts = (
        select(ProviderContract.provider_id, ProviderContract.merchant_id,
               func.row_number().over(partition_by=ProviderContract.merchant_id,
                                      order_by=(ProviderContract.activated_at, ProviderContract.id)).label("rn"))
        .join(eligible_cte, eligible_cte.c.provider_id == ProviderContract.provider_id)
        .where(ProviderContract.mode == "commission_split", _active_at_end(me))
        .cte("d1_contracts"))
    d1 = select(d1_contracts.c.provider_id, d1_contracts.c.merchant_id).where(d1_contracts.c.rn == 1).cte("d1")
    in_month = SalesOrder.paid_at >= ms
    # One pass over the two months' live orders, grouped by shop, then joined to d1's merchants.
    # Not `shop_id IN (d1)`: the planner estimates d1's `rn = 1` at one row and probes the
    # index per merchant with random heap reads (minutes at 10M orders); a semi-join on a
    # superset costs a second hash lookup per order. Grouping every shop's orders is one hash
    # lookup per order, and the outer join keeps d1's merchants only.
    gmv = (select(SalesOrder.shop_id,
                  func.sum(case((in_month, SalesOrder.amount_fen), else_=0)).label("gmv"),
                  func.sum(case((in_month, 0), else_=SalesOrder.amount_fen)).label("gmv_prev"))
           .where(SalesOrder.channel == "live", SalesOrder.status == "paid",
                  SalesOrder.paid_at >= ps, SalesOrder.paid_at < me)
           .group_by(SalesOrder.shop_id).cte("gmv"))
    d1_rows = (await session.execute(
        select(d1.c.provider_id, d1.c.merchant_id, func.coalesce(gmv.c.gmv, 0), func.coalesce(gmv.c.gmv_prev, 0))
        .outerjoin(gmv, gmv.c.shop_id == d1.c.merchant_id)
        .order_by(d1.c.provider_id, d1.c.merchant_id))).all()
    dimension1: dict[str, list[dict]] = {}
    for provider_id, merchant_id, gmv_fen, gmv_prev_fen in d1_rows:
        increment = max(0, int(gmv_fen) - int(gmv_prev_fen))
        dimension1.setdefault(provider_id, []).append({
            "merchant_id": merchant_id, "gmv_prev_fen": int(gmv_prev_fen), "gmv_fen": int(gmv_fen),
            "increment_fen": increment, "voucher_fen": increment * program.coefficient_bp // 10000})

    # dimension 2: first jump to V3/V4 after three months of V0–V2 or absence, once a year
    year = int(month[:4])
    before = [shift_month(month, -i) for i in (1, 2, 3)]
    earlier = MerchantTier.__table__.alias("earlier")
    jumps = (select(MerchantTier.merchant_id, MerchantTier.tier)
             .where(MerchantTier.month == month, MerchantTier.tier >= 3,
                    ~select(literal(1)).where(earlier.c.merchant_id == MerchantTier.merchant_id,
                                              earlier.c.month.in_(before), earlier.c.tier >= 3).exists(),
                    ~select(literal(1)).where(TierAward.merchant_id == MerchantTier.merchant_id,
                                              TierAward.year == year).exists())
             .cte("jumps"))
    d2_contracts = (
        select(ProviderContract.provider_id, ProviderContract.merchant_id, jumps.c.tier,
               func.row_number().over(partition_by=ProviderContract.merchant_id,
                                      order_by=(ProviderContract.activated_at, ProviderContract.id)).label("rn"))
        .join(jumps, jumps.c.merchant_id == ProviderContract.merchant_id)
        .join(eligible_cte, eligible_cte.c.provider_id == ProviderContract.provider_id)
        .where(_active_during(ms, me)).cte("d2_contracts"))
    d2_rows = (await session.execute(
        select(d2_contracts.c.provider_id, d2_contracts.c.merchant_id, d2_contracts.c.tier)
        .where(d2_contracts.c.rn == 1).order_by(d2_contracts.c.provider_id, d2_contracts.c.merchant_id))).all()
    dimension2: dict[str, list[dict]] = {}
    for provider_id, merchant_id, tier in d2_rows:
        reward = program.v4_reward_fen if tier == 4 else program.v3_reward_fen
        dimension2.setdefault(provider_id, []).append({"merchant_id": merchant_id, "tier": int(tier),
                                                       "reward_fen": reward})

    # write the drafts
    created: list[IncentiveStatement] = []  # new drafts: created together (history and events in bulk)
    seen: set[str] = set()
    total_all = eligible_count = 0
    total = len(providers)
    for done, p in enumerate(sorted(providers, key=lambda p: p.provider_id), start=1):
        seen.add(p.provider_id)
        reasons: list[str] = []
        if not p.certified:
            reasons.append("not_certified")
        if p.active < program.min_active_merchants:
            reasons.append("too_few_active_merchants")
        eligible = p.provider_id in eligible_ids
        lines1 = dimension1.get(p.provider_id, []) if eligible else []
        lines2 = dimension2.get(p.provider_id, []) if eligible else []
        total_fen = sum(line["voucher_fen"] for line in lines1) + sum(line["reward_fen"] for line in lines2)
        row = existing.get(p.provider_id)
        values = dict(eligible=eligible, reasons=reasons, active_merchants=int(p.active), dimension1=lines1,
                      dimension2=lines2, total_fen=total_fen, computed_at=now)
        if row is None:
            row = IncentiveStatement(program_id=program_id, provider_id=p.provider_id, month=month, **values)
            created.append(row)
        else:
            for key, value in values.items():
                setattr(row, key, value)
        if lines2:
            session.add_all([TierAward(statement_id=row.id, provider_id=p.provider_id, merchant_id=line["merchant_id"],
                                       year=year, month=month, tier=line["tier"], reward_fen=line["reward_fen"])
                             for line in lines2])
        total_all += total_fen
        eligible_count += int(eligible)
        if progress is not None and (done % 500 == 0 or done == total):
            progress(done, total)
    await INCENTIVE_STATEMENT.create_many(session, created, SYSTEM, now=now)
    stale = [s for pid, s in existing.items() if pid not in seen]
    for row in stale:
        await session.delete(row)
    await session.flush()
    return MonthResult(program_id=program_id, month=month, statements=len(providers), eligible=eligible_count,
                       total_fen=total_all)


async def publish_month(session: AsyncSession, actor: Actor, program_id: str, month: str) -> MonthResult:
    now = await clock.now(session)
    await _program_for_month(session, program_id, month)
    statements = list(await session.scalars(
        select(IncentiveStatement).where(IncentiveStatement.program_id == program_id,
                                         IncentiveStatement.month == month)
        .order_by(IncentiveStatement.id).with_for_update()))
    if not statements:
        raise Conflict(f"{month} has not been computed", code="month_not_computed")
    if any(s.state == "published" for s in statements):
        raise Conflict(f"{month} is already published", code="month_published")
    expires_at = voucher_expiry(now)
    vouchers = total = 0
    for statement in statements:
        await INCENTIVE_STATEMENT.fire(session, statement, "publish", actor, now=now)
        statement.published_at = now
        issued: list[Voucher] = []
        for line in statement.dimension1:
            if line["voucher_fen"] > 0:
                issued.append(Voucher(dimension=1, merchant_id=line["merchant_id"], amount_fen=line["voucher_fen"]))
        reward = sum(line["reward_fen"] for line in statement.dimension2)
        if reward > 0:
            issued.append(Voucher(dimension=2, merchant_id=None, amount_fen=reward))
        for voucher in issued:
            voucher.program_id = program_id
            voucher.statement_id = statement.id
            voucher.provider_id = statement.provider_id
            voucher.month = month
            voucher.remaining_fen = voucher.amount_fen
            voucher.issued_at = now
            voucher.expires_at = expires_at
            await VOUCHER.create(session, voucher, SYSTEM, now=now,
                                 event_data={"amount_fen": voucher.amount_fen, "expires_at": expires_at.isoformat()})
            await schedule(session, VOUCHER.name, voucher.id, "expire", expires_at)
            vouchers += 1
            total += voucher.amount_fen
    await session.flush()
    return MonthResult(program_id=program_id, month=month, statements=len(statements),
                       eligible=sum(int(s.eligible) for s in statements), total_fen=total, vouchers=vouchers)


def _statements_query(actor: Actor, month: str | None):
    query = select(IncentiveStatement)
    if actor.role != "operator":
        query = query.where(IncentiveStatement.provider_id == actor.id)
    if month:
        query = query.where(IncentiveStatement.month == month)
    return query


async def list_statements(session: AsyncSession, actor: Actor, *, month: str | None, limit: int,
                          cursor: str | None) -> tuple[list[StatementOut], str | None]:
    rows, next_cursor = await keyset_page(session, _statements_query(actor, month), IncentiveStatement.id,
                                          limit=limit, cursor=cursor)
    now = await clock.now(session)
    return [statement_out(r, actor, now) for r in rows], next_cursor


EXPORT_COLUMNS = ["statement_id", "program_id", "provider_id", "month", "state", "eligible", "reasons",
                  "active_merchants", "dimension", "merchant_id", "gmv_prev_fen", "gmv_fen", "increment_fen",
                  "tier", "amount_fen", "total_fen"]


async def export_rows(session: AsyncSession, actor: Actor, month: str | None) -> list[list[Any]]:
    """One line per voucher line of each statement (a statement with none gets one line)."""
    now = await clock.now(session)
    out: list[list[Any]] = []
    for row in await session.scalars(_statements_query(actor, month).order_by(IncentiveStatement.id)):
        s = statement_out(row, actor, now)
        head = [s.id, s.program_id, s.provider_id, s.month, s.state, s.eligible, ";".join(s.reasons),
                s.active_merchants]
        lines = [[1, d.merchant_id, d.gmv_prev_fen, d.gmv_fen, d.increment_fen, None, d.voucher_fen]
                 for d in s.dimension1]
        lines += [[2, d.merchant_id, None, None, None, d.tier, d.reward_fen] for d in s.dimension2]
        for line in lines or [[None] * 7]:
            out.append(head + line + [s.total_fen])
    return out


def to_csv(rows: list[list[Any]]) -> bytes:
    return csv_bytes(EXPORT_COLUMNS, (["" if v is None else ("true" if v is True else "false" if v is False else v)
                                       for v in row] for row in rows))


def to_xlsx(rows: list[list[Any]]) -> bytes:
    return xlsx_bytes("statements", EXPORT_COLUMNS, rows)


# -- vouchers ----------------------------------------------------------------------------------
async def list_vouchers(session: AsyncSession, actor: Actor, *, state: str | None, limit: int,
                        cursor: str | None) -> tuple[list[VoucherOut], str | None]:
    await fire_due(session, machines=[VOUCHER.name])
    query = select(Voucher)
    if actor.role != "operator":
        query = query.where(Voucher.provider_id == actor.id)
    if state:
        query = query.where(Voucher.state == state)
    rows, next_cursor = await keyset_page(session, query, Voucher.id, limit=limit, cursor=cursor)
    now = await clock.now(session)
    return [voucher_out(r, actor, now) for r in rows], next_cursor


# -- redemptions -------------------------------------------------------------------------------
async def _has_active_contract(session: AsyncSession, provider_id: str, merchant_id: str) -> bool:
    return await session.scalar(select(ProviderContract.id).where(
        ProviderContract.provider_id == provider_id, ProviderContract.merchant_id == merchant_id,
        ProviderContract.state == "active").limit(1)) is not None


async def request_redemption(session: AsyncSession, actor: Actor, voucher_id: str,
                             body: RedemptionCreate) -> RedemptionOut:
    await fire_due(session, entity_id=voucher_id)
    now = await clock.now(session)
    voucher = await session.scalar(select(Voucher).where(Voucher.id == voucher_id).with_for_update()
                                   .execution_options(populate_existing=True))
    if voucher is None or voucher.provider_id != actor.id:
        raise NotFound("no such voucher")
    if voucher.state != "available" or now >= voucher.expires_at:
        raise Conflict(f"the voucher is {voucher.state}", code="voucher_not_available", state=voucher.state)
    working = await working_days_between(session, clock.local_date(now), body.use_date,
                                         enough=NOTICE_WORKING_DAYS)
    if working < NOTICE_WORKING_DAYS:
        raise ValidationFailed(f"use_date needs {NOTICE_WORKING_DAYS} working days' notice ({working} given)",
                               loc=["body", "use_date"], code="notice_too_short")
    if clock.local_midnight(body.use_date) >= voucher.expires_at:
        raise ValidationFailed("the voucher expires before use_date", loc=["body", "use_date"],
                               code="voucher_expires_first")
    if not await _has_active_contract(session, actor.id, body.merchant_id):
        raise Conflict("the merchant has no active contract with you", code="merchant_not_contracted")
    if voucher.dimension == 1 and body.merchant_id != voucher.merchant_id:
        bound_ended = await session.scalar(select(ProviderContract.id).where(
            ProviderContract.provider_id == actor.id, ProviderContract.merchant_id == voucher.merchant_id,
            ProviderContract.ended_at >= voucher.issued_at).limit(1)) is not None
        if not bound_ended or await _has_active_contract(session, actor.id, voucher.merchant_id):
            raise Conflict("this voucher is bound to another merchant", code="voucher_bound_to_other_merchant",
                           merchant_id=voucher.merchant_id)
    if body.amount_fen > voucher.remaining_fen:
        raise Conflict("the voucher's balance is too low", code="insufficient_balance",
                       remaining_fen=voucher.remaining_fen)
    voucher.remaining_fen -= body.amount_fen
    row = Redemption(voucher_id=voucher.id, provider_id=actor.id, merchant_id=body.merchant_id,
                     amount_fen=body.amount_fen, use_date=body.use_date, requested_at=now)
    await REDEMPTION.create(session, row, actor, now=now,
                            event_data={"amount_fen": body.amount_fen, "use_date": body.use_date.isoformat()})
    return redemption_out(row, actor, now)


def _sees_redemption(row: Redemption, actor: Actor) -> bool:
    return actor.role == "operator" or actor.id in (row.provider_id, row.merchant_id)


async def get_redemption(session: AsyncSession, actor: Actor, redemption_id: str) -> RedemptionOut:
    await fire_due(session, entity_id=redemption_id)
    row = await session.get(Redemption, redemption_id, populate_existing=True)
    if row is None or not _sees_redemption(row, actor):
        raise NotFound("no such redemption")
    return redemption_out(row, actor, await clock.now(session))


async def _after_redeemed(session: AsyncSession, row: Redemption, now: datetime) -> None:
    row.redeemed_at = now
    voucher = await VOUCHER.load_locked(session, row.voucher_id)
    if voucher.state != "available" or voucher.remaining_fen > 0:
        return
    pending = await session.scalar(select(func.count()).select_from(Redemption).where(
        Redemption.voucher_id == voucher.id, Redemption.state.in_(("requested", "approved"))))
    if not pending:
        await VOUCHER.fire(session, voucher, "exhaust", SYSTEM, now=now)


@on_timer("redemption", "fulfil")
async def _fulfil_on_use_date(session: AsyncSession, row, now: datetime) -> None:
    await REDEMPTION.fire(session, row, "fulfil", SYSTEM, now=now)
    await _after_redeemed(session, row, now)


async def act_on_redemption(session: AsyncSession, actor: Actor, redemption_id: str,
                            action: Literal["approve", "reject", "fulfil"], reason: str | None = None) -> RedemptionOut:
    await fire_due(session, entity_id=redemption_id)
    now = await clock.now(session)
    row = await REDEMPTION.load_locked(session, redemption_id)
    await REDEMPTION.fire(session, row, action, actor, now=now, reason=reason)
    if action == "approve":
        await schedule(session, REDEMPTION.name, row.id, "fulfil", clock.local_midnight(row.use_date))
    elif action == "reject":
        row.reject_reason = reason
        voucher = await VOUCHER.load_locked(session, row.voucher_id)
        voucher.remaining_fen += row.amount_fen
    else:
        await _after_redeemed(session, row, now)
    await session.flush()
    return redemption_out(row, actor, now)


# -- holidays ----------------------------------------------------------------------------------
async def replace_holidays(session: AsyncSession, body: HolidaysIn) -> HolidaysOut:
    await session.execute(delete(Holiday))
    session.add_all([Holiday(day=d) for d in body.dates])
    await session.flush()
    return HolidaysOut(dates=list(await session.scalars(select(Holiday.day).order_by(Holiday.day))))


# -- demo data ---------------------------------------------------------------------------------
async def _demo(session: AsyncSession, accounts: dict[str, Account]) -> list[str]:
    """An active commission_split contract between the demo provider and merchant, and a
    program covering the current year (idempotent)."""
    provider, merchant = accounts.get("provider"), accounts.get("merchant")
    if provider is None or merchant is None:
        return []
    now = await clock.now(session)
    lines = []
    if await session.scalar(select(ProviderContract.id).where(ProviderContract.provider_id == provider.id,
                                                              ProviderContract.merchant_id == merchant.id)) is None:
        row = ProviderContract(provider_id=provider.id, merchant_id=merchant.id, mode="commission_split",
                               created_at=now, activated_at=now)
        await PROVIDER_CONTRACT.create(session, row, Actor(provider.id, "service_provider"), now=now,
                                       state="active")
        lines.append("incentives: provider ↔ merchant contract (active, commission_split)")
    year = clock.local_date(now).year
    if await session.scalar(select(IncentiveProgram.id).where(IncentiveProgram.month_from == f"{year}-01")) is None:
        session.add(IncentiveProgram(name=f"服务商流量券激励 {year}", month_from=f"{year}-01", month_to=f"{year}-12",
                                     coefficient_bp=1000, v3_reward_fen=300_000, v4_reward_fen=1_000_000,
                                     min_active_merchants=3, created_at=now))
        lines.append(f"incentives: program {year}-01..{year}-12")
    await session.flush()
    return lines


DEMO_STEPS.append(_demo)
