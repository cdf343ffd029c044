"""Pydantic shapes of the campaigns module (直播间奖励): what the endpoints take and answer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.core.times import AwareUtcDatetime, UtcDatetime
from app.domain.accounts import Contact
from app.domain.schemas import PutBody, Strict
from app.state.campaign import CAMPAIGN
from app.state.campaign_signup import CAMPAIGN_SIGNUP

# the machine is the single source of these closed sets (named enums in OpenAPI)
CampaignState = Annotated[str, CAMPAIGN.state_enum]
CampaignAction = Annotated[str, CAMPAIGN.action_enum]
CampaignSignupState = Annotated[str, CAMPAIGN_SIGNUP.state_enum]
CampaignSignupAction = Annotated[str, CAMPAIGN_SIGNUP.action_enum]


Text2000 = Annotated[str, Field(max_length=2000)]


class CampaignCreate(Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10000)
    signup_deadline: AwareUtcDatetime
    product_deadline: AwareUtcDatetime
    live_from: AwareUtcDatetime
    live_to: AwareUtcDatetime


class CampaignOut(BaseModel):
    id: str
    title: str
    description: str
    signup_deadline: UtcDatetime
    product_deadline: UtcDatetime
    live_from: UtcDatetime
    live_to: UtcDatetime
    state: CampaignState
    version: int
    allowed_actions: list[CampaignAction]
    can_sign_up: bool | None = Field(default=None, description="creators only: pre-selected and before signup_deadline")
    created_at: UtcDatetime


class CampaignEligibleCreatorsIn(PutBody):
    server_owned = frozenset({"campaign_id"})
    creator_ids: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(max_length=10000)


class CampaignEligibleCreatorsOut(BaseModel):
    campaign_id: str
    creator_ids: list[str]


class CampaignSignupCreate(Strict):
    shop_ids: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        min_length=1, max_length=5, description="1–5 merchant ids (带货店铺)"
    )
    planned_live_at: AwareUtcDatetime
    contact: Contact | None = Field(default=None, description="defaults to the creator's profile contact")
    note: Text2000 | None = None


class CampaignSignupRejectIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class CampaignReasonIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class CampaignGrantTrafficIn(Strict):
    traffic_units: int = Field(ge=1, le=10**9)
    note: Text2000 | None = None


class CampaignPlannedItem(Strict):
    product_id: str = Field(min_length=1, max_length=40)
    planned_quantity: int = Field(ge=1, le=10**9)


class CampaignSubmitProductsIn(Strict):
    items: list[CampaignPlannedItem] = Field(min_length=1, max_length=100)


class CampaignContactOut(BaseModel):
    phone: str | None = None
    wechat: str | None = None


class CampaignSignupShopOut(BaseModel):
    shop_id: str
    shop_name: str | None
    decision: str = Field(description="pending | approved | rejected")
    reason: str | None
    decided_at: UtcDatetime | None
    has_products: bool
    stock_confirmed: bool
    stock_confirmed_at: UtcDatetime | None


class CampaignSignupItemOut(BaseModel):
    product_id: str
    shop_id: str
    title: str | None
    planned_quantity: int


class CampaignSignupOut(BaseModel):
    id: str
    campaign_id: str
    creator_id: str
    creator_nickname: str | None
    planned_live_at: UtcDatetime
    contact: CampaignContactOut
    note: str | None
    shops: list[CampaignSignupShopOut]
    items: list[CampaignSignupItemOut]
    traffic_units: int | None
    traffic_note: str | None
    live_session_id: str | None
    state: CampaignSignupState
    version: int
    allowed_actions: list[CampaignSignupAction]
    created_at: UtcDatetime


class CampaignStockPlanCreator(BaseModel):
    creator_id: str
    nickname: str | None
    signup_id: str
    planned_quantity: int
    contact: CampaignContactOut


class CampaignStockPlanRow(BaseModel):
    product_id: str
    title: str
    inventory: int
    planned_total: int
    at_risk: bool
    creators: list[CampaignStockPlanCreator]


class CampaignStockPlanOut(BaseModel):
    campaign_id: str
    items: list[CampaignStockPlanRow]
    download_urls: dict[Literal["csv", "xlsx"], str] = Field(
        description="signed links to the list as a file (下载带货单), for an <a> with no bearer token (an hour)"
    )


class CampaignCardIn(PutBody):
    server_owned = frozenset({"campaign_id", "creator_id", "updated_at"})
    contact: Contact | None = None
    intended_merchants: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=20)
    cooperation_note: Text2000 | None = None


class CampaignCardOut(BaseModel):
    campaign_id: str
    creator_id: str
    contact: CampaignContactOut
    intended_merchants: list[str]
    cooperation_note: str | None
    updated_at: UtcDatetime


class CampaignCreatorOut(BaseModel):
    creator_id: str
    nickname: str | None
    level: int | None
    followers: int | None
    gmv_30d_fen: int = Field(description="paid minus refunded amount_fen of the last 30 days")
    card: CampaignCardOut | None


class CampaignIntentIn(Strict):
    description: str = Field(min_length=1, max_length=2000)
    creator_ids: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(default=None, max_length=100)


class CampaignIntentOut(BaseModel):
    id: str
    campaign_id: str
    merchant_id: str
    shop_name: str | None
    description: str
    creator_ids: list[str]
    created_at: UtcDatetime
