"""Routes of the incentives module: provider contracts, programs, monthly statements, vouchers,
redemptions and the holiday list."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.api.deps import Operator, Page, ReadSession, Session, roles
from app.api.routing import TxRoute, one_write, replica_read
from app.domain import incentives
from app.domain.incentives import (
    MONTH_PATTERN,
    ContractCreate,
    ContractOut,
    EndIn,
    HolidaysIn,
    HolidaysOut,
    MonthResult,
    ProgramCreate,
    ProgramOut,
    RedemptionCreate,
    RedemptionOut,
    RedemptionRejectIn,
    StatementOut,
    VoucherOut,
)
from app.domain.incentives.schemas import ProviderContractState, VoucherState
from app.domain.schemas import PageOut, Problem, history_list
from app.state.core import Actor
from app.state.provider_contract import PROVIDER_CONTRACT

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict] = {
    400: {**_PROBLEM, "description": "the body could not be parsed"},
    401: {**_PROBLEM, "description": "unauthenticated"},
    403: {**_PROBLEM, "description": "this role may not do this"},
    404: {**_PROBLEM, "description": "no such resource (or another party's)"},
    409: {**_PROBLEM, "description": "conflict: invalid_transition, month_published, insufficient_balance …"},
    422: {**_PROBLEM, "description": "validation_failed, notice_too_short, voucher_expires_first …"},
}
router = APIRouter(route_class=TxRoute, responses=ERRORS)

Provider = Annotated[Actor, Depends(roles("service_provider"))]
ContractParty = Annotated[Actor, Depends(roles("service_provider", "merchant", "operator"))]
Merchant = Annotated[Actor, Depends(roles("merchant"))]
ProviderOrOperator = Annotated[Actor, Depends(roles("service_provider", "operator"))]
RedemptionParty = Annotated[Actor, Depends(roles("service_provider", "merchant", "operator"))]
Month = Annotated[str, Path(pattern=MONTH_PATTERN, description="YYYY-MM (Asia/Shanghai month)")]
MonthFilter = Annotated[str | None, Query(pattern=MONTH_PATTERN, description="YYYY-MM")]
Id = Annotated[str, Path(max_length=40)]


# -- contracts ---------------------------------------------------------------------------------
@router.post(
    "/v1/provider-contracts",
    response_model=ContractOut,
    status_code=status.HTTP_201_CREATED,
    tags=["incentives"],
    name="create_provider_contract",
)
async def create_provider_contract(body: ContractCreate, session: Session, actor: Provider):
    """A service provider proposes a contract (分佣 `commission_split` or `service_fee`) to a
    merchant. One proposed or active contract per pair: 409 `contract_exists`."""
    return await incentives.create_contract(session, actor, body)


@router.get("/v1/provider-contracts", response_model=PageOut[ContractOut], tags=["incentives"], name="list_provider_contracts")
async def list_provider_contracts(
    session: Session,
    actor: ContractParty,
    page: Page,
    state: Annotated[ProviderContractState | None, Query()] = None,
):
    """The caller's contracts (provider: its own; merchant: its own; operator: all), newest first."""
    return await incentives.list_contracts(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.get("/v1/provider-contracts/{contract_id}", response_model=ContractOut, tags=["incentives"], name="get_provider_contract")
async def get_provider_contract(contract_id: Id, session: Session, actor: ContractParty):
    """One contract (the two parties and operators; 404 for anyone else)."""
    return await incentives.get_contract(session, actor, contract_id)


@router.get(
    "/v1/provider-contracts/{contract_id}/history",
    response_model=history_list(PROVIDER_CONTRACT),
    tags=["incentives"],
    name="get_provider_contract_history",
)
async def get_provider_contract_history(contract_id: Id, session: Session, actor: ContractParty):
    """Every transition of a contract."""
    return await incentives.contract_history(session, actor, contract_id)


@router.post(
    "/v1/provider-contracts/{contract_id}/accept",
    response_model=ContractOut,
    tags=["incentives"],
    name="accept_provider_contract",
)
async def accept_provider_contract(contract_id: Id, session: Session, actor: ContractParty):
    """The merchant accepts a proposed contract; it becomes `active`."""
    return await incentives.act_on_contract(session, actor, contract_id, "accept")


@router.post(
    "/v1/provider-contracts/{contract_id}/decline",
    response_model=ContractOut,
    tags=["incentives"],
    name="decline_provider_contract",
)
async def decline_provider_contract(contract_id: Id, session: Session, actor: ContractParty):
    """The merchant declines a proposed contract."""
    return await incentives.act_on_contract(session, actor, contract_id, "decline")


@router.post(
    "/v1/provider-contracts/{contract_id}/end", response_model=ContractOut, tags=["incentives"], name="end_provider_contract"
)
async def end_provider_contract(contract_id: Id, body: EndIn, session: Session, actor: ContractParty):
    """Either party ends an active contract, with a reason."""
    return await incentives.act_on_contract(session, actor, contract_id, "end", reason=body.reason)


# -- programs and months -----------------------------------------------------------------------
@router.post(
    "/v1/incentive-programs",
    response_model=ProgramOut,
    status_code=status.HTTP_201_CREATED,
    tags=["incentives"],
    name="create_incentive_program",
)
async def create_incentive_program(body: ProgramCreate, session: Session, _: Operator):
    """The operator creates a program (defaults: coefficient 10%, V3 3,000 yuan, V4 10,000 yuan,
    at least 3 active merchants)."""
    return await incentives.create_program(session, body)


@router.get("/v1/incentive-programs", response_model=PageOut[ProgramOut], tags=["incentives"], name="list_incentive_programs")
async def list_incentive_programs(session: Session, _: Operator, page: Page):
    """Every program, newest first."""
    return await incentives.list_programs(session, limit=page.limit, cursor=page.cursor)


@router.post(
    "/v1/incentive-programs/{program_id}/months/{month}/compute",
    response_model=MonthResult,
    tags=["incentives"],
    name="compute_incentive_month",
)
async def compute_incentive_month(program_id: Id, month: Month, session: Session, _: Operator):
    """Compute (or recompute) the month's draft statements, one per provider. 409
    `month_published` once published, `month_not_over` before the month has ended."""
    return await incentives.compute_month(session, program_id, month)


@router.post(
    "/v1/incentive-programs/{program_id}/months/{month}/publish",
    response_model=MonthResult,
    tags=["incentives"],
    name="publish_incentive_month",
)
async def publish_incentive_month(program_id: Id, month: Month, session: Session, actor: Operator):
    """Publish every statement of the month and issue its vouchers."""
    return await incentives.publish_month(session, actor, program_id, month)


@router.get(
    "/v1/incentive-statements", response_model=PageOut[StatementOut], tags=["incentives"], name="list_incentive_statements"
)
@replica_read
async def list_incentive_statements(session: ReadSession, actor: ProviderOrOperator, page: Page, month: MonthFilter = None):
    """Statements (provider: its own; operator: all), newest first."""
    return await incentives.list_statements(session, actor, month=month, limit=page.limit, cursor=page.cursor)


@router.get(
    "/v1/incentive-statements/export",
    tags=["incentives"],
    name="export_incentive_statements",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}},
)
@replica_read
async def export_incentive_statements(
    session: ReadSession,
    actor: ProviderOrOperator,
    month: MonthFilter = None,
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
):
    """The statements as a file: one line per voucher line (CSV in UTF-8 with a BOM, or XLSX)."""
    download = await incentives.statements_download(session, actor, month, format)
    return Response(
        download.content,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


# -- vouchers and redemptions ------------------------------------------------------------------
@router.get("/v1/vouchers", response_model=PageOut[VoucherOut], tags=["incentives"], name="list_vouchers")
async def list_vouchers(
    session: Session,
    actor: ProviderOrOperator,
    page: Page,
    state: Annotated[VoucherState | None, Query()] = None,
):
    """Vouchers (provider: its own; operator: all), newest first; overdue ones expire first."""
    return await incentives.list_vouchers(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.post(
    "/v1/vouchers/{voucher_id}/redemptions",
    response_model=RedemptionOut,
    status_code=status.HTTP_201_CREATED,
    tags=["incentives"],
    name="create_redemption",
)
@one_write
async def create_redemption(voucher_id: Id, body: RedemptionCreate, session: Session, actor: Provider):
    """The provider asks to use `amount_fen` of a voucher for a merchant on `use_date`; the
    amount is reserved from the balance at once."""
    return await incentives.request_redemption(session, actor, voucher_id, body)


@router.get("/v1/redemptions/{redemption_id}", response_model=RedemptionOut, tags=["incentives"], name="get_redemption")
async def get_redemption(redemption_id: Id, session: Session, actor: RedemptionParty):
    """One redemption (its provider, its merchant, operators)."""
    return await incentives.get_redemption(session, actor, redemption_id)


@router.post(
    "/v1/redemptions/{redemption_id}/approve", response_model=RedemptionOut, tags=["incentives"], name="approve_redemption"
)
async def approve_redemption(redemption_id: Id, session: Session, actor: Operator):
    """The operator approves; it is redeemed at 00:00 Asia/Shanghai of `use_date`."""
    return await incentives.act_on_redemption(session, actor, redemption_id, "approve")


@router.post(
    "/v1/redemptions/{redemption_id}/reject", response_model=RedemptionOut, tags=["incentives"], name="reject_redemption"
)
async def reject_redemption(redemption_id: Id, body: RedemptionRejectIn, session: Session, actor: Operator):
    """The operator rejects, with a reason; the amount returns to the voucher."""
    return await incentives.act_on_redemption(session, actor, redemption_id, "reject", reason=body.reason)


@router.post(
    "/v1/redemptions/{redemption_id}/fulfil", response_model=RedemptionOut, tags=["incentives"], name="fulfil_redemption"
)
async def fulfil_redemption(redemption_id: Id, session: Session, actor: Operator):
    """The operator marks an approved redemption redeemed before its use date."""
    return await incentives.act_on_redemption(session, actor, redemption_id, "fulfil")


@router.get("/v1/admin/holidays", response_model=HolidaysOut, tags=["incentives"], name="get_holidays")
async def get_holidays(session: Session, _: Operator):
    """The holidays (non-working days for the redemption notice rule): the body `PUT` takes back."""
    return await incentives.get_holidays(session)


@router.put("/v1/admin/holidays", response_model=HolidaysOut, tags=["incentives"], name="replace_holidays")
async def replace_holidays(body: HolidaysIn, session: Session, _: Operator):
    """Replace the list of holidays (non-working days for the redemption notice rule)."""
    return await incentives.replace_holidays(session, body)
