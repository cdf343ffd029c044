"""Pydantic shapes of the outreach module (精选联盟建联): the quota policy, this week's quotas,
conversations, messages and contact views."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from app.core.i18n import N_, msg
from app.core.times import UtcDatetime
from app.domain.accounts import Role
from app.domain.schemas import PutBody, Strict

# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------

_LIMIT = Field(ge=0, le=1_000_000)


class QuotaMerchantTier(Strict):
    min_last_week_gmv_fen: int = Field(ge=0, le=10**15)
    conversations: int = _LIMIT
    contact_views: int = _LIMIT


class QuotaCreatorTier(Strict):
    min_level: int = Field(ge=0, le=7)
    conversations: int = _LIMIT


class QuotaFixedLimits(Strict):
    agency_to_creator: int = _LIMIT
    group_leader_to_creator: int = _LIMIT
    group_leader_to_merchant: int = _LIMIT


def _ascending(tiers: list[Any], key: str, loc: str) -> None:
    values = [getattr(t, key) for t in tiers]
    if values[0] != 0:
        raise ValueError(msg("{loc}[0].{key} must be 0 (the first tier starts at 0)", loc=loc, key=key))
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(msg("{loc} must be in strictly ascending order of {key}", loc=loc, key=key))


class QuotaPolicyFields(BaseModel):
    """The weekly limits: merchant tiers by last week's GMV, creator tiers by level, and the
    fixed limits of agencies and group leaders. Tiers ascend; the first starts at 0."""

    merchant_tiers: list[QuotaMerchantTier] = Field(min_length=1, max_length=20)
    creator_tiers: list[QuotaCreatorTier] = Field(min_length=1, max_length=8)
    fixed: QuotaFixedLimits

    @model_validator(mode="after")
    def _tiers_ascend(self) -> QuotaPolicyFields:
        _ascending(self.merchant_tiers, "min_last_week_gmv_fen", "merchant_tiers")
        _ascending(self.creator_tiers, "min_level", "creator_tiers")
        return self


class QuotaPolicyIn(PutBody, QuotaPolicyFields):
    """`PUT /v1/admin/quota-policy`: the limits; the GET's `effective_from` and `scheduled` may
    come along (read-modify-write) and are ignored."""

    server_owned = frozenset({"effective_from", "scheduled"})


class ScheduledQuotaPolicyOut(QuotaPolicyFields):
    effective_from: UtcDatetime | None = Field(
        description="Monday 00:00 Asia/Shanghai from which it applies (null: the built-in defaults)"
    )


class QuotaPolicyOut(ScheduledQuotaPolicyOut):
    """The policy in force this week, and the one scheduled from next week if it differs."""

    scheduled: ScheduledQuotaPolicyOut | None = None


# ---------------------------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------------------------


class QuotaBasis(BaseModel):
    type: Literal["last_week_gmv", "level", "fixed"]
    last_week_gmv_fen: int | None = None
    level: int | None = None
    policy_effective_from: UtcDatetime | None = None


class QuotaItemOut(BaseModel):
    kind: Literal["conversations", "contact_views"]
    counterpart_role: Role
    limit: int
    used: int
    remaining: int
    basis: QuotaBasis


class QuotasOut(BaseModel):
    week_start: UtcDatetime
    resets_at: UtcDatetime
    items: list[QuotaItemOut]


# ---------------------------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------------------------


class ConversationOpen(Strict):
    counterpart_id: str = Field(min_length=1, max_length=40)


class ConversationMessageIn(Strict):
    text: str = Field(min_length=1, max_length=2000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(N_("text must not be blank"))
        return value


class ConversationPartyOut(BaseModel):
    id: str
    role: Role
    display_name: str


class ConversationMessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    text: str
    created_at: UtcDatetime


class ConversationOut(BaseModel):
    id: str
    opener_id: str
    participant_ids: list[str]
    counterpart: ConversationPartyOut = Field(description="the other participant, seen from the caller")
    created_at: UtcDatetime
    last_activity_at: UtcDatetime
    last_message_at: UtcDatetime | None
    message_count: int
    unread_count: int


# ---------------------------------------------------------------------------------------------
# Contact views
# ---------------------------------------------------------------------------------------------


class ContactField(StrEnum):
    phone = "phone"
    wechat = "wechat"


class ContactViewIn(Strict):
    field: ContactField


class ContactViewOut(BaseModel):
    field: ContactField
    value: str
