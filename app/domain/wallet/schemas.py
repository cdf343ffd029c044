"""What the wallet endpoints take and answer (Pydantic)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from app.core.times import UtcDatetime
from app.db.models.task_orders import Bucket, LedgerKind, LedgerRef
from app.domain.schemas import Strict
from app.state.top_up import TOP_UP

# the machine is the single source of these closed sets (named enums in OpenAPI)
TopUpState = Annotated[str, TOP_UP.state_enum]
TopUpAction = Annotated[str, TOP_UP.action_enum]


class WalletOut(BaseModel):
    account_id: str
    available_fen: int
    frozen_fen: int
    total_fen: int


class EntryOut(BaseModel):
    id: str
    transaction_id: str
    kind: LedgerKind
    bucket: Bucket
    amount_fen: int
    balance_after_fen: int
    ref_type: LedgerRef | None
    ref_id: str | None
    memo: str | None
    created_at: UtcDatetime


class TopUpMethod(StrEnum):
    online = "online"
    bank_transfer = "bank_transfer"


class TopUpCreate(Strict):
    amount_fen: int = Field(ge=1, le=10**12, description="fen, at least 1")
    method: TopUpMethod
    reference: str | None = Field(
        default=None, min_length=1, max_length=100, description="the payer's reference (bank transfer memo, order no.)"
    )


class TopUpDecision(Strict):
    note: str | None = Field(default=None, max_length=500)


class TopUpOut(BaseModel):
    id: str
    account_id: str
    amount_fen: int
    method: TopUpMethod
    reference: str | None
    gateway_ref: str | None
    state: TopUpState
    version: int
    allowed_actions: list[TopUpAction]
    created_at: UtcDatetime
    expires_at: UtcDatetime
    decided_at: UtcDatetime | None
    decided_by: str | None
    decision_note: str | None
