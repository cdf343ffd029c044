"""The rules of the incentives module: provider contracts, programs, vouchers, redemptions and
the holiday list. The monthly computation and publication: `compute.py`. Choices where the spec
is silent: docs/incentives.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from app.core.i18n import msg
from app.db.base import id_for
from app.db.bulk import insert_together, write_gated
from app.db.models.incentives import IncentiveProgram, ProviderContract, Redemption
from app.db.repositories import entities
from app.db.repositories import incentives as repo
from app.db.repositories.incentives import (
    ContractRecord,
    ProgramRecord,
    RedemptionRecord,
    StatementRecord,
    VoucherRecord,
)
from app.db.repositories.platform import TransitionRow
from app.domain.incentives.months import NOTICE_WORKING_DAYS, count_working_days
from app.domain.incentives.schemas import (
    ContractCreate,
    ContractMode,
    ContractOut,
    HolidaysIn,
    HolidaysOut,
    ProgramCreate,
    ProgramOut,
    RedemptionCreate,
    RedemptionOut,
    StatementOut,
    VoucherOut,
)
from app.domain.schemas import PageOut
from app.state import clock
from app.state.core import EXPECTED_VERSION, SYSTEM, Actor, history
from app.state.incentive_statement import INCENTIVE_STATEMENT
from app.state.provider_contract import PROVIDER_CONTRACT
from app.state.redemption import REDEMPTION
from app.state.timers import fire_due, new_timer, on_timer, page_as_of_now
from app.state.voucher import VOUCHER


# -- representations ---------------------------------------------------------------------------
def contract_out(row: ContractRecord, actor: Actor, now: datetime) -> ContractOut:
    return ContractOut(
        id=row.id,
        provider_id=row.provider_id,
        merchant_id=row.merchant_id,
        mode=ContractMode(row.mode),
        state=row.state,
        version=row.version,
        allowed_actions=PROVIDER_CONTRACT.allowed_actions(row, actor, now),
        created_at=row.created_at,
        activated_at=row.activated_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


def program_out(row: ProgramRecord) -> ProgramOut:
    return ProgramOut.model_validate(row, from_attributes=True)


def statement_out(row: StatementRecord, actor: Actor, now: datetime) -> StatementOut:
    return StatementOut(
        id=row.id,
        program_id=row.program_id,
        provider_id=row.provider_id,
        month=row.month,
        state=row.state,
        version=row.version,
        allowed_actions=INCENTIVE_STATEMENT.allowed_actions(row, actor, now),
        eligible=row.eligible,
        reasons=list(row.reasons),
        active_merchants=row.active_merchants,
        dimension1=row.dimension1,
        dimension2=row.dimension2,
        total_fen=row.total_fen,
        computed_at=row.computed_at,
        published_at=row.published_at,
    )


def voucher_out(row: VoucherRecord, actor: Actor, now: datetime) -> VoucherOut:
    return VoucherOut(
        id=row.id,
        provider_id=row.provider_id,
        program_id=row.program_id,
        month=row.month,
        dimension=row.dimension,
        merchant_id=row.merchant_id,
        amount_fen=row.amount_fen,
        remaining_fen=row.remaining_fen,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        state=row.state,
        version=row.version,
        allowed_actions=VOUCHER.allowed_actions(row, actor, now),
    )


def redemption_out(row: RedemptionRecord, actor: Actor, now: datetime) -> RedemptionOut:
    return RedemptionOut(
        id=row.id,
        voucher_id=row.voucher_id,
        provider_id=row.provider_id,
        merchant_id=row.merchant_id,
        amount_fen=row.amount_fen,
        use_date=row.use_date,
        state=row.state,
        version=row.version,
        allowed_actions=REDEMPTION.allowed_actions(row, actor, now),
        requested_at=row.requested_at,
        redeemed_at=row.redeemed_at,
        reject_reason=row.reject_reason,
    )


# -- contracts ---------------------------------------------------------------------------------
def _contract_exists(contract_id: str | None = None) -> Conflict:
    extra: dict[str, Any] = {} if contract_id is None else {"contract_id": contract_id}
    return Conflict("a proposed or active contract with this merchant exists", code="contract_exists", **extra)


async def create_contract(session: AsyncSession, actor: Actor, body: ContractCreate) -> ContractOut:
    now = await clock.now(session)
    role, live = await repo.proposal_check(session, actor.id, body.merchant_id)
    if role != "merchant":
        raise ValidationFailed("unknown merchant", loc=["body", "merchant_id"])
    if live is not None:
        raise _contract_exists(live)
    values = {
        "id": id_for(ProviderContract),
        "provider_id": actor.id,
        "merchant_id": body.merchant_id,
        "mode": body.mode.value,
        "created_at": now,
        "activated_at": None,
        "ended_at": None,
        "end_reason": None,
    }
    row, parts = PROVIDER_CONTRACT.creation(values, actor, now)
    if not await repo.insert_contract(session, parts[0][1][0]):  # a concurrent proposal for the pair won
        raise _contract_exists()
    await insert_together(session, *parts[1:])  # its history row, event and recipients
    return contract_out(row, actor, now)


async def _visible_contract(session: AsyncSession, actor: Actor, contract_id: str) -> ContractRecord:
    row = await repo.contract_visible_to(session, actor.role, actor.id, contract_id)
    if row is None:
        raise NotFound("no such contract")
    return row


async def get_contract(session: AsyncSession, actor: Actor, contract_id: str) -> ContractOut:
    row = await _visible_contract(session, actor, contract_id)
    return contract_out(row, actor, await clock.now(session))


async def contract_history(session: AsyncSession, actor: Actor, contract_id: str) -> list[TransitionRow]:
    await _visible_contract(session, actor, contract_id)
    return await history(session, PROVIDER_CONTRACT.name, contract_id)


async def list_contracts(
    session: AsyncSession, actor: Actor, *, state: str | None, limit: int, cursor: str | None
) -> PageOut[ContractOut]:
    page = await repo.contracts_page(session, actor.role, actor.id, state=state, limit=limit, cursor=cursor)
    now = await clock.now(session)
    return PageOut[ContractOut](items=[contract_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def act_on_contract(
    session: AsyncSession, actor: Actor, contract_id: str, action: str, reason: str | None = None
) -> ContractOut:
    now = await clock.now(session)
    row = await _visible_contract(session, actor, contract_id)
    by_action: dict[str, dict[str, Any]] = {"accept": {"activated_at": now}, "end": {"ended_at": now, "end_reason": reason}}
    changes = by_action.get(action, {})
    row = await PROVIDER_CONTRACT.fire(session, row, action, actor, now=now, reason=reason, changes=changes)
    return contract_out(row, actor, now)


# -- programs ----------------------------------------------------------------------------------
async def create_program(session: AsyncSession, body: ProgramCreate) -> ProgramOut:
    values = {**body.model_dump(), "id": id_for(IncentiveProgram), "created_at": await clock.now(session)}
    return program_out(await repo.insert_program(session, values))


async def list_programs(session: AsyncSession, *, limit: int, cursor: str | None) -> PageOut[ProgramOut]:
    page = await repo.programs_page(session, limit=limit, cursor=cursor)
    return PageOut[ProgramOut](items=[program_out(r) for r in page.items], next_cursor=page.next_cursor)


# -- vouchers ----------------------------------------------------------------------------------
async def list_vouchers(
    session: AsyncSession, actor: Actor, *, state: str | None, limit: int, cursor: str | None
) -> PageOut[VoucherOut]:
    page = await page_as_of_now(
        session, VOUCHER.name, lambda: repo.vouchers_page(session, actor.role, actor.id, state=state, limit=limit, cursor=cursor)
    )
    now = await clock.now(session)
    return PageOut[VoucherOut](items=[voucher_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


# -- redemptions -------------------------------------------------------------------------------
def _not_available(voucher: VoucherRecord) -> Conflict:
    return Conflict(msg("the voucher is {state}", state=voucher.state), code="voucher_not_available", state=voucher.state)


def _too_low(voucher: VoucherRecord) -> Conflict:
    return Conflict("the voucher's balance is too low", code="insufficient_balance", remaining_fen=voucher.remaining_fen)


async def _voucher_now(session: AsyncSession, actor: Actor, voucher_id: str) -> tuple[VoucherRecord, datetime]:
    """The caller's voucher as of now, and business time, in one statement: its expiry timer is
    fired first when the row says it is overdue (as the sweeper would have)."""
    voucher, offset = await repo.voucher_visible_to(session, actor.role, actor.id, voucher_id, with_clock=clock.carries_offset())
    if voucher is None:
        raise NotFound("no such voucher")
    clock.remember(session, offset)
    now = await clock.now(session)
    if voucher.state == "available" and now >= voucher.expires_at:
        await fire_due(session, entity_id=voucher_id)
        voucher, _ = await repo.voucher_visible_to(session, actor.role, actor.id, voucher_id)
        assert voucher is not None
    return voucher, now


async def _redemption_now(session: AsyncSession, actor: Actor, redemption_id: str) -> tuple[RedemptionRecord, datetime]:
    """The redemption as of now (if the caller sees it), and business time: an approved one is
    fulfilled first when its use date has begun (its timer is due)."""
    row, offset = await repo.redemption_visible_to(
        session, actor.role, actor.id, redemption_id, with_clock=clock.carries_offset()
    )
    if row is None:
        raise NotFound("no such redemption")
    clock.remember(session, offset)
    now = await clock.now(session)
    if row.state == "approved" and now >= clock.local_midnight(row.use_date):
        await fire_due(session, entity_id=redemption_id)
        row, _ = await repo.redemption_visible_to(session, actor.role, actor.id, redemption_id)
        assert row is not None
    return row, now


async def request_redemption(session: AsyncSession, actor: Actor, voucher_id: str, body: RedemptionCreate) -> RedemptionOut:
    voucher, now = await _voucher_now(session, actor, voucher_id)
    # If-Match names the voucher's version: 412 before anything is decided, and the reservation
    # below then holds the voucher to that version (a request that moved it meanwhile wins)
    if_match = EXPECTED_VERSION.get()
    VOUCHER.expect_version(voucher, actor, now)
    pinned = if_match is not None and EXPECTED_VERSION.get() is None  # it checked this voucher
    if voucher.state != "available" or now >= voucher.expires_at:
        raise _not_available(voucher)
    today = clock.local_date(now)
    # the contracts and the notice period's holidays in one read; the checks keep their order
    standing = await repo.redemption_standing(
        session,
        actor.id,
        body.merchant_id,
        voucher.merchant_id,
        voucher.issued_at,
        holidays_after=today,
        holidays_until=max(today, body.use_date),
    )
    working = count_working_days(standing.holidays, today, body.use_date, enough=NOTICE_WORKING_DAYS)
    if working < NOTICE_WORKING_DAYS:
        raise ValidationFailed(
            msg("use_date needs {needed} working days' notice ({given} given)", needed=NOTICE_WORKING_DAYS, given=working),
            loc=["body", "use_date"],
            code="notice_too_short",
        )
    if clock.local_midnight(body.use_date) >= voucher.expires_at:
        raise ValidationFailed("the voucher expires before use_date", loc=["body", "use_date"], code="voucher_expires_first")
    if not standing.merchant_active:
        raise Conflict("the merchant has no active contract with you", code="merchant_not_contracted")
    if voucher.dimension == 1 and body.merchant_id != voucher.merchant_id and (not standing.bound_ended or standing.bound_active):
        raise Conflict(
            "this voucher is bound to another merchant", code="voucher_bound_to_other_merchant", merchant_id=voucher.merchant_id
        )
    if body.amount_fen > voucher.remaining_fen:
        raise _too_low(voucher)
    values = {
        "id": id_for(Redemption),
        "voucher_id": voucher.id,
        "provider_id": actor.id,
        "merchant_id": body.merchant_id,
        "amount_fen": body.amount_fen,
        "use_date": body.use_date,
        "requested_at": now,
        "redeemed_at": None,
        "reject_reason": None,
    }
    row, parts = REDEMPTION.creation(
        values, actor, now, event_data={"amount_fen": body.amount_fen, "use_date": body.use_date.isoformat()}
    )
    # the balance is reserved and the redemption written in one statement, or neither
    gate, reserve = repo.RESERVE_GATE, {"g_id": voucher.id, "g_amount": body.amount_fen}
    if pinned:
        gate, reserve = repo.RESERVE_SEEN_GATE, {**reserve, "g_seen": voucher.version}
    if await write_gated(session, gate, reserve, *parts) is None:
        current = await entities.entity(session, VOUCHER.table, VoucherRecord, voucher.id)
        if pinned and current is not None and current.version != voucher.version:
            allowed = VOUCHER.allowed_actions(current, actor, now)
            raise PreconditionFailed(voucher.version, current.version, current.state, allowed)
        if current is None or current.state != "available":
            raise _not_available(current or voucher)
        raise _too_low(current)  # another request reserved it since it was read
    return redemption_out(row, actor, now)


async def get_redemption(session: AsyncSession, actor: Actor, redemption_id: str) -> RedemptionOut:
    row, now = await _redemption_now(session, actor, redemption_id)
    return redemption_out(row, actor, now)


async def _after_redeemed(session: AsyncSession, row: RedemptionRecord, now: datetime) -> None:
    """The voucher is used up once nothing of it is left and no redemption of it is open. Its
    row is locked first, so two redemptions redeemed at once see each other's outcome."""
    voucher = await entities.entity(session, VOUCHER.table, VoucherRecord, row.voucher_id, lock=True)
    if voucher is None or voucher.state != "available" or voucher.remaining_fen > 0:
        return
    if not await repo.has_open_redemptions(session, voucher.id):
        await VOUCHER.fire(session, voucher, "exhaust", SYSTEM, now=now)


async def _fulfil(session: AsyncSession, row: RedemptionRecord, actor: Actor, now: datetime) -> RedemptionRecord:
    row = await REDEMPTION.fire(session, row, "fulfil", actor, now=now, changes={"redeemed_at": now})
    await _after_redeemed(session, row, now)
    return row


@on_timer("redemption", "fulfil")
async def _fulfil_on_use_date(session: AsyncSession, row: RedemptionRecord, now: datetime) -> None:
    await _fulfil(session, row, SYSTEM, now)


async def act_on_redemption(
    session: AsyncSession,
    actor: Actor,
    redemption_id: str,
    action: Literal["approve", "reject", "fulfil"],
    reason: str | None = None,
) -> RedemptionOut:
    row, now = await _redemption_now(session, actor, redemption_id)
    if action == "approve":  # redeemed at 00:00 of its use date, unless fulfilled before
        row = await REDEMPTION.fire(
            session,
            row,
            action,
            actor,
            now=now,
            reason=reason,
            also=[new_timer(REDEMPTION.name, row.id, "fulfil", clock.local_midnight(row.use_date))],
        )
    elif action == "reject":
        row = await REDEMPTION.fire(session, row, action, actor, now=now, reason=reason, changes={"reject_reason": reason})
        await repo.return_to_voucher(session, row.voucher_id, row.amount_fen)
    else:
        row = await _fulfil(session, row, actor, now)
    return redemption_out(row, actor, now)


# -- holidays ----------------------------------------------------------------------------------
async def get_holidays(session: AsyncSession) -> HolidaysOut:
    return HolidaysOut(dates=await repo.holidays_list(session))


async def replace_holidays(session: AsyncSession, body: HolidaysIn) -> HolidaysOut:
    return HolidaysOut(dates=await repo.replace_holidays(session, body.dates))
