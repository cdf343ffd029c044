"""Routes of the campaigns module (直播间奖励活动)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response

from app.api.deps import Operator, Page, ReadSession, Session, link_or_roles, roles
from app.api.routing import TxRoute, one_write, replica_read
from app.domain import campaigns as svc
from app.domain.campaigns import (
    CampaignCardIn,
    CampaignCardOut,
    CampaignCreate,
    CampaignCreatorOut,
    CampaignEligibleCreatorsIn,
    CampaignEligibleCreatorsOut,
    CampaignGrantTrafficIn,
    CampaignIntentIn,
    CampaignIntentOut,
    CampaignOut,
    CampaignReasonIn,
    CampaignSignupCreate,
    CampaignSignupOut,
    CampaignSignupRejectIn,
    CampaignSignupState,
    CampaignState,
    CampaignStockPlanOut,
    CampaignSubmitProductsIn,
)
from app.domain.schemas import PageOut, history_list
from app.state.campaign import CAMPAIGN as CAMPAIGN_MACHINE
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.core import Actor

router = APIRouter(route_class=TxRoute)
TAGS: list[str | Enum] = ["campaigns"]
Party = Annotated[Actor, Depends(roles("operator", "merchant", "creator"))]
Merchant = Annotated[Actor, Depends(roles("merchant"))]
Creator = Annotated[Actor, Depends(roles("creator"))]
MerchantOrOperator = Annotated[Actor, Depends(roles("merchant", "operator"))]
CAMPAIGN = "/v1/campaigns/{campaign_id}"
SIGNUP = "/v1/campaign-signups/{signup_id}"


# -- campaigns ---------------------------------------------------------------------------------
@router.post("/v1/campaigns", response_model=CampaignOut, status_code=status.HTTP_201_CREATED, tags=TAGS, name="create_campaign")
async def create_campaign(body: CampaignCreate, session: Session, actor: Operator):
    """Create a campaign in `draft` (operator). `signup_deadline ≤ product_deadline ≤ live_from < live_to`."""
    return await svc.create_campaign(session, actor, body)


@router.get("/v1/campaigns", response_model=PageOut[CampaignOut], tags=TAGS, name="list_campaigns")
async def list_campaigns(session: Session, actor: Party, page: Page, state: CampaignState | None = None):
    """Campaigns, newest first: operators see all; merchants and creators the published and closed ones
    (creators with `can_sign_up`)."""
    return await svc.list_campaigns(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.get(CAMPAIGN, response_model=CampaignOut, tags=TAGS, name="get_campaign")
async def get_campaign(campaign_id: str, session: Session, actor: Party):
    """One campaign (a draft is 404 for everyone but operators)."""
    return await svc.get_campaign(session, actor, campaign_id)


@router.post(CAMPAIGN + "/publish", response_model=CampaignOut, tags=TAGS, name="publish_campaign")
async def publish_campaign(campaign_id: str, session: Session, actor: Operator):
    """`draft` → `published` (operator): merchants and creators can see it."""
    return await svc.campaign_action(session, actor, campaign_id, "publish")


@router.post(CAMPAIGN + "/close", response_model=CampaignOut, tags=TAGS, name="close_campaign")
async def close_campaign(campaign_id: str, session: Session, actor: Operator, body: CampaignReasonIn | None = None):
    """`published` → `closed` (operator; the timer at `live_to` does it otherwise)."""
    return await svc.campaign_action(session, actor, campaign_id, "close", body.reason if body else None)


@router.get(CAMPAIGN + "/history", response_model=history_list(CAMPAIGN_MACHINE), tags=TAGS, name="campaign_history")
async def campaign_history(campaign_id: str, session: Session, actor: Party):
    """Every transition of the campaign, oldest first."""
    return await svc.campaign_history(session, actor, campaign_id)


@router.put(
    CAMPAIGN + "/eligible-creators", response_model=CampaignEligibleCreatorsOut, tags=TAGS, name="set_campaign_eligible_creators"
)
async def set_eligible_creators(campaign_id: str, body: CampaignEligibleCreatorsIn, session: Session, actor: Operator):
    """Replace the pre-selected creators (平台圈定) of the campaign (operator)."""
    return await svc.set_eligible(session, actor, campaign_id, body)


@router.get(
    CAMPAIGN + "/eligible-creators", response_model=CampaignEligibleCreatorsOut, tags=TAGS, name="get_campaign_eligible_creators"
)
async def get_eligible_creators(campaign_id: str, session: Session, actor: Operator):
    """The pre-selected creators of the campaign (operator)."""
    return await svc.get_eligible(session, actor, campaign_id)


# -- signups -----------------------------------------------------------------------------------
@router.post(
    CAMPAIGN + "/signups",
    response_model=CampaignSignupOut,
    status_code=status.HTTP_201_CREATED,
    tags=TAGS,
    name="create_campaign_signup",
)
@one_write
async def create_signup(campaign_id: str, body: CampaignSignupCreate, session: Session, actor: Creator):
    """A pre-selected creator signs up before `signup_deadline` (403 `not_eligible`, 409 `deadline_passed`)."""
    return await svc.create_signup(session, actor, campaign_id, body)


@router.get(CAMPAIGN + "/signups", response_model=PageOut[CampaignSignupOut], tags=TAGS, name="list_campaign_signups")
async def list_signups(campaign_id: str, session: Session, actor: Party, page: Page, state: CampaignSignupState | None = None):
    """Signups of the campaign: a creator sees its own, a merchant those listing its shop, an operator all."""
    return await svc.list_signups(session, actor, campaign_id, state=state, limit=page.limit, cursor=page.cursor)


@router.get(SIGNUP, response_model=CampaignSignupOut, tags=TAGS, name="get_campaign_signup")
async def get_signup(signup_id: str, session: Session, actor: Party):
    """One signup with every listed shop's decision and stock confirmation."""
    return await svc.get_signup(session, actor, signup_id)


@router.get(SIGNUP + "/history", response_model=history_list(CAMPAIGN_SIGNUP), tags=TAGS, name="campaign_signup_history")
async def signup_history(signup_id: str, session: Session, actor: Party):
    """Every transition of the signup, oldest first."""
    return await svc.signup_history(session, actor, signup_id)


@router.post(SIGNUP + "/merchant-approve", response_model=CampaignSignupOut, tags=TAGS, name="merchant_approve_campaign_signup")
async def merchant_approve(signup_id: str, session: Session, actor: Party):
    """A listed shop approves, for itself, before `product_deadline`."""
    return await svc.merchant_decide(session, actor, signup_id, True)


@router.post(SIGNUP + "/merchant-reject", response_model=CampaignSignupOut, tags=TAGS, name="merchant_reject_campaign_signup")
async def merchant_reject(signup_id: str, body: CampaignSignupRejectIn, session: Session, actor: Party):
    """A listed shop rejects, for itself, with a reason, before `product_deadline`."""
    return await svc.merchant_decide(session, actor, signup_id, False, body.reason)


@router.post(SIGNUP + "/platform-approve", response_model=CampaignSignupOut, tags=TAGS, name="platform_approve_campaign_signup")
async def platform_approve(signup_id: str, session: Session, actor: Party, body: CampaignReasonIn | None = None):
    """`pending_platform` → `approved` (operator)."""
    return await svc.simple_action(session, actor, signup_id, "platform-approve", body.reason if body else None)


@router.post(SIGNUP + "/platform-reject", response_model=CampaignSignupOut, tags=TAGS, name="platform_reject_campaign_signup")
async def platform_reject(signup_id: str, body: CampaignSignupRejectIn, session: Session, actor: Party):
    """`pending_platform` → `platform_rejected` (operator), with a reason."""
    return await svc.simple_action(session, actor, signup_id, "platform-reject", body.reason)


@router.post(SIGNUP + "/grant-traffic", response_model=CampaignSignupOut, tags=TAGS, name="grant_campaign_signup_traffic")
async def grant_traffic(signup_id: str, body: CampaignGrantTrafficIn, session: Session, actor: Party):
    """`approved` → `traffic_granted` (operator): traffic support (流量扶持) for the live room."""
    return await svc.grant_traffic(session, actor, signup_id, body)


@router.post(SIGNUP + "/submit-products", response_model=CampaignSignupOut, tags=TAGS, name="submit_campaign_signup_products")
async def submit_products(signup_id: str, body: CampaignSubmitProductsIn, session: Session, actor: Party):
    """The creator submits (or revises) products of approving shops with planned quantities, before
    `product_deadline`; a revision resets the stock confirmations."""
    return await svc.submit_products(session, actor, signup_id, body)


@router.post(
    SIGNUP + "/merchant-confirm-stock", response_model=CampaignSignupOut, tags=TAGS, name="merchant_confirm_campaign_signup_stock"
)
async def merchant_confirm_stock(signup_id: str, session: Session, actor: Party):
    """A shop with planned products confirms its stock; the last one moves the signup to `stock_confirmed`."""
    return await svc.merchant_confirm_stock(session, actor, signup_id)


@router.post(
    SIGNUP + "/platform-confirm-stock", response_model=CampaignSignupOut, tags=TAGS, name="platform_confirm_campaign_signup_stock"
)
async def platform_confirm_stock(signup_id: str, session: Session, actor: Party):
    """`stock_confirmed` → `ready` (operator)."""
    return await svc.simple_action(session, actor, signup_id, "platform-confirm-stock")


@router.post(SIGNUP + "/withdraw", response_model=CampaignSignupOut, tags=TAGS, name="withdraw_campaign_signup")
async def withdraw(signup_id: str, session: Session, actor: Party, body: CampaignReasonIn | None = None):
    """The creator withdraws a signup still awaiting a decision."""
    return await svc.simple_action(session, actor, signup_id, "withdraw", body.reason if body else None)


# -- merchant tools ----------------------------------------------------------------------------
@router.get(CAMPAIGN + "/stock-plan", response_model=CampaignStockPlanOut, tags=TAGS, name="get_campaign_stock_plan")
@replica_read
async def stock_plan(campaign_id: str, session: ReadSession, actor: Merchant):
    """查看备货: one row per own product planned in submitted signups, with `at_risk = planned_total > inventory`."""
    return await svc.stock_plan(session, actor, campaign_id)


@router.get(
    CAMPAIGN + "/stock-plan/export",
    tags=TAGS,
    name="export_campaign_stock_plan",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
            "description": "the stock plan, a row per product and creator",
        }
    },
)
@replica_read
async def export_stock_plan(
    campaign_id: str,
    session: ReadSession,
    actor: Annotated[Actor, Depends(link_or_roles("merchant"))],
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
) -> Response:
    """下载带货单: CSV (UTF-8 with BOM) or XLSX, a row per product and creator: with a bearer
    token, or as a signed link of the stock plan's `download_urls` (works in an `<a>`)."""
    download = await svc.stock_plan_download(session, actor, campaign_id, format)
    return Response(
        content=download.content,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


@router.get(CAMPAIGN + "/creators", response_model=PageOut[CampaignCreatorOut], tags=TAGS, name="list_campaign_creators")
async def list_creators(
    campaign_id: str,
    session: Session,
    actor: Party,
    page: Page,
    q: Annotated[str | None, Query(max_length=100)] = None,
    level_min: Annotated[int | None, Query(ge=0, le=7)] = None,
):
    """寻找达人: the pre-selected creators with profile, 30-day GMV and their campaign card."""
    return await svc.list_creators(session, actor, campaign_id, q=q, level_min=level_min, limit=page.limit, cursor=page.cursor)


@router.get(CAMPAIGN + "/my-card", response_model=CampaignCardOut, tags=TAGS, name="get_my_campaign_card")
async def get_my_card(campaign_id: str, session: Session, actor: Creator):
    """The caller's own card (404 before it published one): its body is what `PUT` accepts back."""
    return await svc.get_card(session, actor, campaign_id)


@router.put(CAMPAIGN + "/my-card", response_model=CampaignCardOut, tags=TAGS, name="put_my_campaign_card")
async def put_my_card(campaign_id: str, body: CampaignCardIn, session: Session, actor: Creator):
    """A pre-selected creator publishes (or replaces) its card: contact, intended merchants, cooperation note."""
    return await svc.put_card(session, actor, campaign_id, body)


@router.post(
    CAMPAIGN + "/intents",
    response_model=CampaignIntentOut,
    status_code=status.HTTP_201_CREATED,
    tags=TAGS,
    name="create_campaign_intent",
)
async def create_intent(campaign_id: str, body: CampaignIntentIn, session: Session, actor: Merchant):
    """发布合作意向: a merchant publishes a cooperation intent, optionally naming the creators wanted."""
    return await svc.create_intent(session, actor, campaign_id, body)


@router.get(CAMPAIGN + "/intents", response_model=PageOut[CampaignIntentOut], tags=TAGS, name="list_campaign_intents")
async def list_intents(campaign_id: str, session: Session, actor: Party, page: Page):
    """Intents: a merchant sees its own, pre-selected creators and operators see all (with shop names)."""
    return await svc.list_intents(session, actor, campaign_id, limit=page.limit, cursor=page.cursor)
