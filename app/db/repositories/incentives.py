"""Statements of the incentives module: provider contracts, programs, the monthly computation
(set-based SQL over the facts), statements, vouchers, redemptions and the holiday list.

Who sees what is written once, here (`_VISIBLE`): an operator every row, a service provider the
rows it is the provider of, a merchant the rows it is the merchant of; lists and single rows use
the same scope."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, Table, bindparam, delete, exists, false, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.accounts import Account
from app.db.models.incentives import (
    Holiday,
    IncentiveProgram,
    IncentiveStatement,
    ProviderContract,
    Redemption,
    Voucher,
)
from app.db.repositories._run import prepare_module, record_of, run
from app.db.repositories.pages import Page, keyset
from app.db.repositories.platform import CLOCK_OFFSET
from app.db.session import dialect_of

contracts = table_of(ProviderContract)
programs = table_of(IncentiveProgram)
statements = table_of(IncentiveStatement)
vouchers = table_of(Voucher)
redemptions = table_of(Redemption)
holidays = table_of(Holiday)
accounts = table_of(Account)


@dataclass(frozen=True, slots=True)
class ContractRecord:
    id: str
    state: str
    version: int
    provider_id: str
    merchant_id: str
    mode: str
    created_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class ProgramRecord:
    id: str
    name: str
    month_from: str
    month_to: str
    coefficient_bp: int
    v3_reward_fen: int
    v4_reward_fen: int
    min_active_merchants: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StatementRecord:
    id: str
    state: str
    version: int
    program_id: str
    provider_id: str
    month: str
    eligible: bool
    reasons: list[Any]
    active_merchants: int
    dimension1: list[Any]
    dimension2: list[Any]
    total_fen: int
    computed_at: datetime
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class VoucherRecord:
    id: str
    state: str
    version: int
    program_id: str
    statement_id: str
    provider_id: str
    month: str
    dimension: int
    merchant_id: str | None
    amount_fen: int
    remaining_fen: int
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    id: str
    state: str
    version: int
    voucher_id: str
    provider_id: str
    merchant_id: str
    amount_fen: int
    use_date: date
    requested_at: datetime
    redeemed_at: datetime | None
    reject_reason: str | None


# --------------------------------------------------------------------------- who sees what
# role -> the column that must hold the caller's id (None: every row); a role not listed sees nothing
_VISIBLE: dict[str, dict[str, str | None]] = {
    "provider_contracts": {"operator": None, "service_provider": "provider_id", "merchant": "merchant_id"},
    "redemptions": {"operator": None, "service_provider": "provider_id", "merchant": "merchant_id"},
    "incentive_statements": {"operator": None, "service_provider": "provider_id"},
    "vouchers": {"operator": None, "service_provider": "provider_id"},
}


def _visible(table: Table, role: str, account_id: Any) -> Select:
    """The rows of `table` a caller of `role` sees (`account_id`: its id, or a bindparam)."""
    scope = _VISIBLE[table.name]
    query = select(table)
    if role not in scope:
        return query.where(false())
    column = scope[role]
    return query if column is None else query.where(table.c[column] == account_id)


def _one_visible(table: Table) -> dict[tuple[str, bool], Select]:
    """Per role, one row of `table` by id if the caller sees it, without and with the test
    clock's offset as a column (built once)."""
    statements: dict[tuple[str, bool], Select] = {}
    for role in _VISIBLE[table.name]:
        one = _visible(table, role, bindparam("account_id")).where(table.c.id == bindparam("id"))
        statements[role, False], statements[role, True] = one, one.add_columns(CLOCK_OFFSET)
    return statements


_CONTRACT_FOR = _one_visible(contracts)
_REDEMPTION_FOR = _one_visible(redemptions)
_VOUCHER_FOR = _one_visible(vouchers)


async def _one_for(
    session: AsyncSession,
    statements_by_role: dict[tuple[str, bool], Select],
    record: type,
    role: str,
    account_id: str,
    entity_id: str,
    with_clock: bool = False,
) -> tuple[Any, int | None]:
    """(the record, or None; the test clock's offset when asked and the row was found)."""
    statement = statements_by_role.get((role, with_clock))
    if statement is None:
        return None, None
    row = (await run(session, statement, {"account_id": account_id, "id": entity_id})).first()
    if row is None:
        return None, None
    return record_of(record, row), row.clock_offset if with_clock else None


# --------------------------------------------------------------------------- contracts
_LIVE = or_(contracts.c.state == "proposed", contracts.c.state == "active")  # not IN (…): that is an expanding list
_PROPOSAL = select(
    accounts.c.role,
    select(contracts.c.id)
    .where(contracts.c.provider_id == bindparam("provider"), contracts.c.merchant_id == bindparam("merchant"), _LIVE)
    .limit(1)
    .scalar_subquery()
    .label("live_id"),
).where(accounts.c.id == bindparam("merchant"))


async def proposal_check(session: AsyncSession, provider_id: str, merchant_id: str) -> tuple[str | None, str | None]:
    """(the role of the account `merchant_id`, None if there is none; the id of the pair's
    proposed or active contract, if any) in one statement."""
    row = (await run(session, _PROPOSAL, {"provider": provider_id, "merchant": merchant_id})).first()
    return (None, None) if row is None else (row.role, row.live_id)


async def contract_visible_to(session: AsyncSession, role: str, account_id: str, contract_id: str) -> ContractRecord | None:
    return (await _one_for(session, _CONTRACT_FOR, ContractRecord, role, account_id, contract_id))[0]


def _insert_contract(dialect_insert):
    # a pair's live contract exists already (the partial unique index): nothing, and no row back
    return (
        dialect_insert(contracts)
        .values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in contracts.c})
        .on_conflict_do_nothing()
        .returning(contracts.c.id)
    )


_INSERT_CONTRACT = {"postgresql": _insert_contract(pg_insert), "sqlite": _insert_contract(sqlite_insert)}


async def insert_contract(session: AsyncSession, values: dict[str, Any]) -> bool:
    """A new contract of `values` (every column); False when the pair has a proposed or active
    one (a concurrent proposal that won: this statement waited for it to commit)."""
    params = {f"v_{k}": v for k, v in values.items()}
    return (await run(session, _INSERT_CONTRACT[dialect_of(session).name], params)).first() is not None


async def contracts_page(
    session: AsyncSession, role: str, account_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page[ContractRecord]:
    query = _visible(contracts, role, account_id)
    if state:
        query = query.where(contracts.c.state == state)
    return await keyset(session, query, contracts.c.id, ContractRecord, limit=limit, cursor=cursor)


_PAIR_CONTRACT = (
    select(contracts.c.id)
    .where(contracts.c.provider_id == bindparam("provider"), contracts.c.merchant_id == bindparam("merchant"))
    .limit(1)
)


async def has_contract(session: AsyncSession, provider_id: str, merchant_id: str) -> bool:
    """Whether the pair has a contract in any state."""
    return (await run(session, _PAIR_CONTRACT, {"provider": provider_id, "merchant": merchant_id})).first() is not None


# --------------------------------------------------------------------------- programs
_PROGRAM_COLUMNS = tuple(f.name for f in fields(ProgramRecord))
_INSERT_PROGRAM = (
    insert(programs).values({c: bindparam(f"v_{c}", type_=programs.c[c].type) for c in _PROGRAM_COLUMNS}).returning(*programs.c)
)
_LOCK_PROGRAM = select(programs).where(programs.c.id == bindparam("id")).with_for_update()
_PROGRAM_FROM = select(programs.c.id).where(programs.c.month_from == bindparam("month")).limit(1)


async def insert_program(session: AsyncSession, values: dict[str, Any]) -> ProgramRecord:
    """A new program of `values` (every column, the id included)."""
    row = (await run(session, _INSERT_PROGRAM, {f"v_{c}": values[c] for c in _PROGRAM_COLUMNS})).one()
    return record_of(ProgramRecord, row)


async def programs_page(session: AsyncSession, *, limit: int, cursor: str | None) -> Page[ProgramRecord]:
    return await keyset(session, select(programs), programs.c.id, ProgramRecord, limit=limit, cursor=cursor)


async def lock_program(session: AsyncSession, program_id: str) -> ProgramRecord | None:
    """The program, locked until the transaction ends: compute and publish of one program never
    interleave."""
    row = (await run(session, _LOCK_PROGRAM, {"id": program_id})).first()
    return None if row is None else record_of(ProgramRecord, row)


async def has_program_from(session: AsyncSession, month: str) -> bool:
    return (await run(session, _PROGRAM_FROM, {"month": month})).first() is not None


# --------------------------------------------------------------------------- statements
_LOCK_MONTH = (
    select(statements)
    .where(statements.c.program_id == bindparam("program"), statements.c.month == bindparam("month"))
    .order_by(statements.c.id)
    .with_for_update()
)


async def lock_month_statements(session: AsyncSession, program_id: str, month: str) -> list[StatementRecord]:
    """The month's statements of a program, locked in id order."""
    rows = await run(session, _LOCK_MONTH, {"program": program_id, "month": month})
    return [record_of(StatementRecord, row) for row in rows]


def _statements_query(role: str, account_id: str, month: str | None) -> Select:
    query = _visible(statements, role, account_id)
    return query if not month else query.where(statements.c.month == month)


async def statements_page(
    session: AsyncSession, role: str, account_id: str, *, month: str | None, limit: int, cursor: str | None
) -> Page[StatementRecord]:
    return await keyset(
        session, _statements_query(role, account_id, month), statements.c.id, StatementRecord, limit=limit, cursor=cursor
    )


async def statements_for_export(session: AsyncSession, role: str, account_id: str, month: str | None) -> list[StatementRecord]:
    """Every statement the caller sees (of `month`), oldest first."""
    query = _statements_query(role, account_id, month).order_by(statements.c.id)
    return [record_of(StatementRecord, row) for row in await run(session, query)]


# --------------------------------------------------------------------------- vouchers
async def vouchers_page(
    session: AsyncSession, role: str, account_id: str, *, state: str | None, limit: int, cursor: str | None
) -> Page[VoucherRecord]:
    query = _visible(vouchers, role, account_id)
    if state:
        query = query.where(vouchers.c.state == state)
    return await keyset(session, query, vouchers.c.id, VoucherRecord, limit=limit, cursor=cursor)


async def voucher_visible_to(
    session: AsyncSession, role: str, account_id: str, voucher_id: str, *, with_clock: bool = False
) -> tuple[VoucherRecord | None, int | None]:
    """The voucher if the caller sees it, and the test clock's offset when asked."""
    return await _one_for(session, _VOUCHER_FOR, VoucherRecord, role, account_id, voucher_id, with_clock)


RESERVE_GATE = (
    update(vouchers)
    .where(vouchers.c.id == bindparam("g_id"), vouchers.c.state == "available", vouchers.c.remaining_fen >= bindparam("g_amount"))
    .values(remaining_fen=vouchers.c.remaining_fen - bindparam("g_amount"), version=vouchers.c.version + 1)
    .returning(vouchers.c.id, vouchers.c.remaining_fen)
)
"""A reservation as one conditional UPDATE: the voucher is locked, checked (still available,
enough balance) and moved at once; the redemption and its outbox rows are written behind it
(`write_gated`), or nothing is when another request took the balance first."""
RESERVE_SEEN_GATE = RESERVE_GATE.where(vouchers.c.version == bindparam("g_seen"))
"""The reservation of a request with `If-Match`: only while the voucher still has the version
the caller checked (`g_seen`), so a change in between is 412, never a reservation behind it."""

_RETURN_TO_VOUCHER = (
    update(vouchers)
    .where(vouchers.c.id == bindparam("b_id"))
    .values(remaining_fen=vouchers.c.remaining_fen + bindparam("b_amount"), version=vouchers.c.version + 1)
)


async def return_to_voucher(session: AsyncSession, voucher_id: str, amount_fen: int) -> None:
    """A rejected redemption's amount goes back to the voucher's balance."""
    await run(session, _RETURN_TO_VOUCHER, {"b_id": voucher_id, "b_amount": amount_fen})


_HAS_OPEN = (
    select(redemptions.c.id)
    .where(
        redemptions.c.voucher_id == bindparam("voucher"),
        or_(redemptions.c.state == "requested", redemptions.c.state == "approved"),
    )
    .limit(1)
)


async def has_open_redemptions(session: AsyncSession, voucher_id: str) -> bool:
    """Whether a redemption of the voucher is still requested or approved."""
    return (await run(session, _HAS_OPEN, {"voucher": voucher_id})).first() is not None


# --------------------------------------------------------------------------- redemptions
async def redemption_visible_to(
    session: AsyncSession, role: str, account_id: str, redemption_id: str, *, with_clock: bool = False
) -> tuple[RedemptionRecord | None, int | None]:
    """The redemption if the caller sees it, and the test clock's offset when asked."""
    return await _one_for(session, _REDEMPTION_FOR, RedemptionRecord, role, account_id, redemption_id, with_clock)


def _contract_exists(*criteria) -> Any:
    return exists().where(contracts.c.provider_id == bindparam("provider"), *criteria)


_STANDING = select(
    _contract_exists(contracts.c.merchant_id == bindparam("merchant"), contracts.c.state == "active").label("merchant_active"),
    _contract_exists(contracts.c.merchant_id == bindparam("bound"), contracts.c.state == "active").label("bound_active"),
    _contract_exists(contracts.c.merchant_id == bindparam("bound"), contracts.c.ended_at >= bindparam("issued_at")).label(
        "bound_ended"
    ),
)


@dataclass(frozen=True, slots=True)
class Standing:
    """The provider's contracts as a redemption request needs them."""

    merchant_active: bool  # an active contract with the merchant it is for
    bound_active: bool  # an active contract with the merchant the voucher is bound to
    bound_ended: bool  # a contract with the bound merchant ended since the voucher was issued
    holidays: frozenset[date]  # the holidays in (holidays_after, holidays_until]


# on PostgreSQL the holidays of the notice period come in the same statement (one round trip)
_STANDING_AND_HOLIDAYS = _STANDING.add_columns(
    select(func.array_agg(holidays.c.day))
    .where(holidays.c.day > bindparam("after"), holidays.c.day <= bindparam("until"))
    .scalar_subquery()
    .label("holidays")
)


async def redemption_standing(
    session: AsyncSession,
    provider_id: str,
    merchant_id: str,
    bound_merchant_id: str | None,
    issued_at: datetime,
    *,
    holidays_after: date,
    holidays_until: date,
) -> Standing:
    """The provider's contracts a redemption request checks, and the holidays of its notice period."""
    params = {"provider": provider_id, "merchant": merchant_id, "bound": bound_merchant_id, "issued_at": issued_at}
    if dialect_of(session).name == "postgresql":
        row = (await run(session, _STANDING_AND_HOLIDAYS, {**params, "after": holidays_after, "until": holidays_until})).one()
        days = frozenset(row.holidays or ())
    else:
        row = (await run(session, _STANDING, params)).one()
        days = frozenset(await holidays_between(session, holidays_after, holidays_until))
    return Standing(bool(row.merchant_active), bool(row.bound_active), bool(row.bound_ended), days)


# --------------------------------------------------------------------------- holidays
_HOLIDAYS_BETWEEN = select(holidays.c.day).where(holidays.c.day > bindparam("after"), holidays.c.day <= bindparam("until"))
_ALL_HOLIDAYS = select(holidays.c.day).order_by(holidays.c.day)
_FORGET_HOLIDAYS = delete(holidays)
_INSERT_HOLIDAY = insert(holidays).values(day=bindparam("day", type_=holidays.c.day.type))


async def holidays_between(session: AsyncSession, after: date, until: date) -> set[date]:
    """Holidays in (after, until]."""
    return set((await run(session, _HOLIDAYS_BETWEEN, {"after": after, "until": until})).scalars())


async def holidays_list(session: AsyncSession) -> list[date]:
    """Every holiday, sorted."""
    return list((await run(session, _ALL_HOLIDAYS)).scalars())


async def replace_holidays(session: AsyncSession, days: list[date]) -> list[date]:
    """The holiday list becomes `days`; the stored list, sorted."""
    await run(session, _FORGET_HOLIDAYS)
    if days:
        await run(session, _INSERT_HOLIDAY, [{"day": d} for d in days])
    return list((await run(session, _ALL_HOLIDAYS)).scalars())


prepare_module(globals())
