"""Pydantic shapes of the live bases module: request bodies and answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.core.times import UtcDatetime
from app.domain.products import ProductOut
from app.domain.schemas import Strict
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING

# the machine is the single source of these closed sets (named enums in OpenAPI)
CreatorBindingState = Annotated[str, CREATOR_BINDING.state_enum]
CreatorBindingAction = Annotated[str, CREATOR_BINDING.action_enum]
ShopBindingState = Annotated[str, SHOP_BINDING.state_enum]
ShopBindingAction = Annotated[str, SHOP_BINDING.action_enum]
CheckInState = Annotated[str, CHECK_IN.state_enum]
CheckInAction = Annotated[str, CHECK_IN.action_enum]
CooperationState = Annotated[str, COOPERATION.state_enum]
CooperationAction = Annotated[str, COOPERATION.action_enum]


class LiveBaseCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(min_length=1, max_length=300)


class LiveBaseOut(BaseModel):
    id: str
    agency_id: str
    name: str
    address: str
    created_at: UtcDatetime


class AgencyCard(BaseModel):
    id: str
    name: str | None
    head_annual: bool


class ShopCard(BaseModel):
    id: str
    shop_name: str | None
    experience_score: float | None


class LiveBaseDetail(LiveBaseOut):
    """The base's home page (what creators see): its agency, bound shops and listed products."""

    agency: AgencyCard
    shops: list[ShopCard]
    products: list[ProductOut]


class CreatorBindingCreate(Strict):
    creator_id: str = Field(max_length=40)
    commission_bp: int = Field(ge=0, le=10000)


class CreatorBindingPatch(Strict):
    commission_bp: int = Field(ge=0, le=10000)


class CreatorBindingOut(BaseModel):
    id: str
    agency_id: str
    creator_id: str
    commission_bp: int
    strong: bool = Field(description="bound to a head annual agency (强绑定)")
    state: CreatorBindingState
    version: int
    allowed_actions: list[CreatorBindingAction]
    invited_at: UtcDatetime
    expires_at: UtcDatetime
    began_at: UtcDatetime | None
    ended_at: UtcDatetime | None
    live_count: int | None = Field(description="live sessions since the binding began (null before)")


class ShopBindingCreate(Strict):
    shop_id: str = Field(max_length=40)
    type: Literal["live_base"] = "live_base"


class ShopBindingOut(BaseModel):
    id: str
    agency_id: str
    shop_id: str
    type: Literal["live_base"]
    state: ShopBindingState
    version: int
    allowed_actions: list[ShopBindingAction]
    invited_at: UtcDatetime
    expires_at: UtcDatetime
    began_at: UtcDatetime | None
    ended_at: UtcDatetime | None


class PoolItemOut(BaseModel):
    item_id: str
    product: ProductOut
    shop: ShopCard
    qualifies: bool
    listed: bool


class CheckInCodeOut(BaseModel):
    token: str
    url: str = Field(description="the check-in page the QR code opens (its token in the query)")
    svg_url: str = Field(description="a signed link to the QR picture, for an <img> (no bearer token; an hour)")
    expires_at: UtcDatetime


class CheckInCreate(Strict):
    token: str = Field(min_length=1, max_length=2000)


class Eligibility(BaseModel):
    eligible: bool
    reasons: list[str]


class CheckInOut(BaseModel):
    id: str
    base_id: str
    agency_id: str
    creator_id: str
    state: CheckInState
    version: int
    allowed_actions: list[CheckInAction]
    eligibility: Eligibility
    created_at: UtcDatetime
    expires_at: UtcDatetime
    checked_in_at: UtcDatetime | None
    checked_out_at: UtcDatetime | None
    cooperation_id: str | None


class CooperationOut(BaseModel):
    id: str
    base_id: str
    agency_id: str
    creator_id: str
    state: CooperationState
    version: int
    allowed_actions: list[CooperationAction]
    started_at: UtcDatetime
    ends_at: UtcDatetime
    ended_at: UtcDatetime | None


class CreatorStats(BaseModel):
    creator_id: str
    nickname: str | None
    gmv_fen: int
    orders: int


class ProductStats(BaseModel):
    product_id: str
    title: str
    gmv_fen: int
    orders: int


class StatsOut(BaseModel):
    base_id: str
    from_: UtcDatetime = Field(alias="from", serialization_alias="from")
    to: UtcDatetime
    gmv_fen: int
    orders: int
    check_ins: int
    live_sessions: int
    by_creator: list[CreatorStats]
    by_product: list[ProductStats]

    model_config = {"populate_by_name": True}
