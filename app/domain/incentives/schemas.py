"""Request and response shapes of the incentives module."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator

from app.core.i18n import N_
from app.core.times import UtcDatetime
from app.domain.incentives.months import MONTH_PATTERN
from app.domain.schemas import PutBody, Strict
from app.state.incentive_statement import INCENTIVE_STATEMENT
from app.state.provider_contract import PROVIDER_CONTRACT
from app.state.redemption import REDEMPTION
from app.state.voucher import VOUCHER

# the machine is the single source of these closed sets (named enums in OpenAPI)
ProviderContractState = Annotated[str, PROVIDER_CONTRACT.state_enum]
ProviderContractAction = Annotated[str, PROVIDER_CONTRACT.action_enum]
IncentiveStatementState = Annotated[str, INCENTIVE_STATEMENT.state_enum]
IncentiveStatementAction = Annotated[str, INCENTIVE_STATEMENT.action_enum]
VoucherState = Annotated[str, VOUCHER.state_enum]
VoucherAction = Annotated[str, VOUCHER.action_enum]
RedemptionState = Annotated[str, REDEMPTION.state_enum]
RedemptionAction = Annotated[str, REDEMPTION.action_enum]


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
    state: ProviderContractState
    version: int
    allowed_actions: list[ProviderContractAction]
    created_at: UtcDatetime
    activated_at: UtcDatetime | None
    ended_at: UtcDatetime | None
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
            raise ValueError(N_("month_to is before month_from"))
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
    created_at: UtcDatetime


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
    state: IncentiveStatementState
    version: int
    allowed_actions: list[IncentiveStatementAction]
    eligible: bool
    reasons: list[str]
    active_merchants: int
    dimension1: list[Dimension1Line]
    dimension2: list[Dimension2Line]
    total_fen: int
    computed_at: UtcDatetime
    published_at: UtcDatetime | None


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
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    state: VoucherState
    version: int
    allowed_actions: list[VoucherAction]


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
    state: RedemptionState
    version: int
    allowed_actions: list[RedemptionAction]
    requested_at: UtcDatetime
    redeemed_at: UtcDatetime | None
    reject_reason: str | None


class HolidaysIn(PutBody):
    dates: list[date] = Field(max_length=1000)

    @field_validator("dates")
    @classmethod
    def _unique(cls, dates: list[date]) -> list[date]:
        return sorted(set(dates))


class HolidaysOut(BaseModel):
    dates: list[date]
