"""What the task-order endpoints take and answer (Pydantic)."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from app.core.i18n import N_, msg
from app.core.times import AwareUtcDatetime, UtcDatetime
from app.db.models.task_orders import HoldStatus
from app.domain.accounts import Role
from app.domain.schemas import Strict
from app.state.dispute import DISPUTE
from app.state.task_order import STATUS_ENUM, SUB_STATUS_ENUM, TASK_ORDER

# the machine is the single source of these closed sets (named enums in OpenAPI)


class CompensationRule(StrEnum):
    """Why a cancelled or rejected order paid the creator what it did (`compensation_rule`);
    the merchant's rules are tried in this order (docs/task-orders.md)."""

    not_accepted = "not_accepted"  # the merchant cancelled before acceptance: nothing
    creator_no_show = "creator_no_show"  # no live session linked by the end of the window: nothing
    execution_day = "execution_day"  # on the day of the live session: the whole fee
    within_72h_of_acceptance = "within_72h_of_acceptance"  # soon after acceptance: nothing
    default_rate = "default_rate"  # otherwise: LC_CANCEL_COMPENSATION_BP of the fee
    creator_cancelled = "creator_cancelled"  # the creator cancelled: nothing
    creator_rejected = "creator_rejected"  # the creator refused the order: nothing
    creator_timeout = "creator_timeout"  # not accepted in time: nothing


TaskOrderState = Annotated[str, TASK_ORDER.state_enum]
TaskOrderAction = Annotated[str, TASK_ORDER.action_enum]
TaskOrderStatus = Annotated[str, STATUS_ENUM]  # the list tabs, from the machine's state map
TaskOrderSubStatus = Annotated[str, SUB_STATUS_ENUM]
DisputeState = Annotated[str, DISPUTE.state_enum]
DisputeAction = Annotated[str, DISPUTE.action_enum]


def _check_title(value: str) -> str:
    """汉字、字母、数字、标点: Unicode letters (L*), decimal digits (Nd), punctuation (P*), and a
    space between words. No emoji or other symbols, no control characters."""
    if not 1 <= len(value) <= 20:
        raise ValueError(N_("the title has 1 to 20 characters"))
    if value != value.strip():
        raise ValueError(N_("the title may not start or end with a space"))
    for char in value:
        category = unicodedata.category(char)
        if char in (" ", "\u3000") or category[0] in ("L", "P") or category == "Nd":
            continue
        raise ValueError(
            msg("the title may only hold Chinese characters, letters, digits and punctuation (not {char})", char=repr(char))
        )
    return value


def _check_contact_name(value: str) -> str:
    if not value.strip():
        raise ValueError(N_("the contact name is empty"))
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise ValueError(N_("the contact name holds control characters"))
    return value


def _to_the_minute(value: datetime) -> datetime:
    if value.second or value.microsecond:
        raise ValueError(N_("expected_start_at is to the minute (seconds must be zero)"))
    return value


class SessionType(StrEnum):
    dedicated = "dedicated"
    shared = "shared"


class Plan(StrEnum):
    general = "general"
    targeted = "targeted"


class OrderProductIn(Strict):
    product_id: str = Field(min_length=1, max_length=40)
    plan: Plan
    commission_bp: int | None = Field(
        default=None, ge=0, le=10000, description="targeted: 0–8000, required; general: the product's rate (may be omitted)"
    )

    @model_validator(mode="after")
    def _rate(self) -> OrderProductIn:
        if self.plan is Plan.targeted:
            if self.commission_bp is None:
                raise ValueError(N_("a targeted product needs commission_bp"))
            if self.commission_bp > 8000:
                raise ValueError(N_("a targeted rate is 0–8000 bp"))
        return self


class TaskOrderCreate(Strict):
    title: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_check_title)]
    contact_name: Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_check_contact_name)]
    contact_phone: str = Field(pattern=r"^1[3-9]\d{9}$", description="mainland mobile number")
    expected_start_at: Annotated[AwareUtcDatetime, AfterValidator(_to_the_minute)]
    return_samples: bool
    session_type: SessionType
    hours: int = Field(ge=1, le=24)
    creator_id: str = Field(min_length=1, max_length=40)
    products: list[OrderProductIn] = Field(min_length=1, max_length=20)

    @field_validator("products")
    @classmethod
    def _unique(cls, products: list[OrderProductIn]) -> list[OrderProductIn]:
        if len({p.product_id for p in products}) != len(products):
            raise ValueError(N_("a product appears twice"))
        return products


class CancelReason(Strict):
    code: str = Field(min_length=1, max_length=40)
    note: str | None = Field(default=None, max_length=200)


class CancelIn(Strict):
    reason: CancelReason


class TaskOrderRejectIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class CancelReasonOut(BaseModel):
    code: str
    label: str
    parties: list[str]


CANCEL_REASONS: list[CancelReasonOut] = [
    CancelReasonOut(code="schedule_changed", label="档期变动", parties=["merchant", "creator"]),
    CancelReasonOut(code="product_issue", label="商品问题（库存、价格、资质）", parties=["merchant"]),
    CancelReasonOut(code="budget_changed", label="预算调整", parties=["merchant"]),
    CancelReasonOut(code="creator_unresponsive", label="达人联系不上", parties=["merchant"]),
    CancelReasonOut(code="merchant_unresponsive", label="商家联系不上", parties=["creator"]),
    CancelReasonOut(code="product_unsuitable", label="商品不适合直播间", parties=["creator"]),
    CancelReasonOut(code="samples_not_received", label="未收到样品", parties=["creator"]),
    CancelReasonOut(code="health", label="身体原因", parties=["creator"]),
    CancelReasonOut(code="other", label="其他（请填写说明）", parties=["merchant", "creator"]),
]
_REASONS = {r.code: r for r in CANCEL_REASONS}


# =========================================================================== representation
class OrderProductOut(BaseModel):
    product_id: str
    title: str | None
    plan: Plan
    commission_bp: int


class LiveSessionInfo(BaseModel):
    id: str
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
    peak_viewers: int
    room_url: str
    gmv_fen: int = Field(description="paid minus refunded amount of this order's products in the session")


class WatchOut(BaseModel):
    room_url: str
    qr_svg_url: str


class CancelReasonValue(BaseModel):
    code: str
    note: str | None


class TaskOrderOut(BaseModel):
    id: str
    state: TaskOrderState
    version: int
    allowed_actions: list[TaskOrderAction]
    status: TaskOrderStatus
    sub_status: TaskOrderSubStatus | None
    title: str
    merchant_id: str
    creator_id: str
    creator_nickname: str | None
    contact_name: str
    contact_phone: str
    expected_start_at: UtcDatetime
    return_samples: bool
    session_type: SessionType
    hours: int
    hourly_fen: int
    amount_fen: int
    products: list[OrderProductOut]
    created_at: UtcDatetime
    accept_deadline: UtcDatetime
    accepted_at: UtcDatetime | None
    review_deadline: UtcDatetime | None
    finished_at: UtcDatetime | None
    cancelled_by: Role | None
    cancel_reason: CancelReasonValue | None
    compensation_fen: int | None
    compensation_rule: CompensationRule | None
    creator_received_fen: int = Field(description="what the creator has been paid for this order so far")
    hold_status: HoldStatus | None = Field(description="the escrow of the slot fee: held until the order ends")
    live_sessions: list[LiveSessionInfo] | None = Field(default=None, description="detail only")
    watch: WatchOut | None = None


class TargetedPlanOut(BaseModel):
    id: str
    task_order_id: str
    merchant_id: str
    creator_id: str
    product_id: str
    product_title: str | None
    commission_bp: int
    created_at: UtcDatetime


class DisputeCreate(Strict):
    reason: str = Field(min_length=1, max_length=500)


class DisputeResolve(Strict):
    creator_share_fen: int = Field(ge=0, le=10**13, description="the creator's final share of amount_fen")
    note: str | None = Field(default=None, max_length=500)


class DisputeOut(BaseModel):
    id: str
    task_order_id: str
    state: DisputeState
    version: int
    allowed_actions: list[DisputeAction]
    opened_by: str
    opened_by_role: Role
    reason: str
    amount_fen: int
    creator_received_fen: int = Field(description="what the creator has been paid for the order so far")
    creator_share_fen: int | None
    adjustment_fen: int | None = Field(description="posted at resolution: + merchant→creator, - creator→merchant")
    resolution_note: str | None
    created_at: UtcDatetime
    closed_at: UtcDatetime | None
