"""Rules and services of the campaigns module (直播间奖励): campaigns, pre-selected creators,
signups and their per-shop decisions, the merchants' stock plan and its export, finding
creators, creators' cards and merchants' cooperation intents."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.accounts import Account, Product
from app.db.models.campaigns import (
    RELEASED_STATES,
    Campaign,
    CampaignCard,
    CampaignEligibleCreator,
    CampaignIntent,
    CampaignSignup,
    CampaignSignupItem,
    CampaignSignupShop,
)
from app.db.models.facts import LiveSession, SalesOrder
from app.db.pagination import keyset_page
from app.domain import clock
from app.domain.accounts import Contact
from app.domain.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.domain.exports import csv_bytes, xlsx_bytes
from app.domain.gmv import gmv_sum
from app.domain.notifications import notify
from app.domain.schemas import Strict
from app.domain.signals import live_session_ended, live_session_started
from app.state.campaign import CAMPAIGN
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.core import SYSTEM, Actor, history
from app.state.timers import fire_due, schedule

# Signups whose products count in the stock plan (submitted, not withdrawn, rejected or expired).
PLANNED_STATES = ("products_submitted", "stock_confirmed", "ready", "live", "finished")
VISIBLE_TO_PARTIES = ("published", "closed")
GMV_WINDOW = timedelta(days=30)


class CampaignState(StrEnum):
    draft = "draft"
    published = "published"
    closed = "closed"


class CampaignSignupState(StrEnum):
    pending_merchant = "pending_merchant"
    pending_platform = "pending_platform"
    merchant_rejected = "merchant_rejected"
    approved = "approved"
    platform_rejected = "platform_rejected"
    traffic_granted = "traffic_granted"
    products_submitted = "products_submitted"
    stock_confirmed = "stock_confirmed"
    ready = "ready"
    live = "live"
    finished = "finished"
    withdrawn = "withdrawn"
    expired = "expired"


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------
Text2000 = Annotated[str, Field(max_length=2000)]


class CampaignCreate(Strict):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10000)
    signup_deadline: AwareDatetime
    product_deadline: AwareDatetime
    live_from: AwareDatetime
    live_to: AwareDatetime


class CampaignOut(BaseModel):
    id: str
    title: str
    description: str
    signup_deadline: datetime
    product_deadline: datetime
    live_from: datetime
    live_to: datetime
    state: CampaignState
    version: int
    allowed_actions: list[str]
    can_sign_up: bool | None = Field(
        default=None, description="creators only: pre-selected and before signup_deadline")
    created_at: datetime


class CampaignEligibleCreatorsIn(Strict):
    creator_ids: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(max_length=10000)


class CampaignEligibleCreatorsOut(BaseModel):
    campaign_id: str
    creator_ids: list[str]


class CampaignSignupCreate(Strict):
    shop_ids: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        min_length=1, max_length=5, description="1–5 merchant ids (带货店铺)")
    planned_live_at: AwareDatetime
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
    decided_at: datetime | None
    has_products: bool
    stock_confirmed: bool
    stock_confirmed_at: datetime | None


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
    planned_live_at: datetime
    contact: CampaignContactOut
    note: str | None
    shops: list[CampaignSignupShopOut]
    items: list[CampaignSignupItemOut]
    traffic_units: int | None
    traffic_note: str | None
    live_session_id: str | None
    state: CampaignSignupState
    version: int
    allowed_actions: list[str]
    created_at: datetime


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


class CampaignCardIn(Strict):
    contact: Contact | None = None
    intended_merchants: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20)
    cooperation_note: Text2000 | None = None


class CampaignCardOut(BaseModel):
    campaign_id: str
    creator_id: str
    contact: CampaignContactOut
    intended_merchants: list[str]
    cooperation_note: str | None
    updated_at: datetime


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
    created_at: datetime


# ----------------------------------------------------------------------------------------------
# campaigns
# ----------------------------------------------------------------------------------------------
def _campaign_visible(campaign: Campaign | None, actor: Actor) -> bool:
    if campaign is None:
        return False
    if actor.role == "operator":
        return True
    return actor.role in ("merchant", "creator") and campaign.state in VISIBLE_TO_PARTIES


async def _is_eligible(session: AsyncSession, campaign_id: str, creator_id: str) -> bool:
    return bool(await session.scalar(select(CampaignEligibleCreator.creator_id).where(
        CampaignEligibleCreator.campaign_id == campaign_id, CampaignEligibleCreator.creator_id == creator_id)))


def campaign_out(row: Campaign, actor: Actor, now: datetime, eligible: bool = False) -> CampaignOut:
    can = None
    if actor.role == "creator":
        can = eligible and row.state == "published" and now < row.signup_deadline
    return CampaignOut(id=row.id, title=row.title, description=row.description,
                       signup_deadline=row.signup_deadline, product_deadline=row.product_deadline,
                       live_from=row.live_from, live_to=row.live_to, state=row.state, version=row.version,
                       allowed_actions=CAMPAIGN.allowed_actions(row, actor, now), can_sign_up=can,
                       created_at=row.created_at)


async def _visible_campaign(session: AsyncSession, actor: Actor, campaign_id: str) -> Campaign:
    await fire_due(session, entity_id=campaign_id)
    row = await session.get(Campaign, campaign_id, populate_existing=True)
    if not _campaign_visible(row, actor):
        raise NotFound("no such campaign")
    return row


async def create_campaign(session: AsyncSession, actor: Actor, body: CampaignCreate) -> CampaignOut:
    now = await clock.now(session)
    if not body.signup_deadline <= body.product_deadline:
        raise ValidationFailed("signup_deadline must not be after product_deadline",
                               loc=["body", "product_deadline"])
    if not body.product_deadline <= body.live_from:
        raise ValidationFailed("product_deadline must not be after live_from", loc=["body", "live_from"])
    if not body.live_from < body.live_to:
        raise ValidationFailed("live_to must be after live_from", loc=["body", "live_to"])
    if body.live_to <= now:
        raise ValidationFailed("the live window is already over", loc=["body", "live_to"])
    row = Campaign(title=body.title, description=body.description, signup_deadline=body.signup_deadline,
                   product_deadline=body.product_deadline, live_from=body.live_from, live_to=body.live_to,
                   created_by=actor.id, created_at=now)
    await CAMPAIGN.create(session, row, actor, now=now)
    await schedule(session, "campaign", row.id, "close", row.live_to)
    return campaign_out(row, actor, now)


async def list_campaigns(session: AsyncSession, actor: Actor, *, state: CampaignState | None, limit: int,
                         cursor: str | None) -> tuple[list[CampaignOut], str | None]:
    await fire_due(session, machines=["campaign"])
    now = await clock.now(session)
    query = select(Campaign)
    if actor.role != "operator":
        query = query.where(Campaign.state.in_(VISIBLE_TO_PARTIES))
    if state is not None:
        query = query.where(Campaign.state == state.value)
    rows, next_cursor = await keyset_page(session, query, Campaign.id, limit=limit, cursor=cursor)
    eligible: set[str] = set()
    if actor.role == "creator" and rows:
        eligible = set(await session.scalars(select(CampaignEligibleCreator.campaign_id).where(
            CampaignEligibleCreator.creator_id == actor.id,
            CampaignEligibleCreator.campaign_id.in_([r.id for r in rows]))))
    return [campaign_out(r, actor, now, r.id in eligible) for r in rows], next_cursor


async def get_campaign(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignOut:
    row = await _visible_campaign(session, actor, campaign_id)
    now = await clock.now(session)
    eligible = actor.role == "creator" and await _is_eligible(session, row.id, actor.id)
    return campaign_out(row, actor, now, eligible)


async def campaign_action(session: AsyncSession, actor: Actor, campaign_id: str, action: str,
                          reason: str | None = None) -> CampaignOut:
    await fire_due(session, entity_id=campaign_id)
    row = await CAMPAIGN.load_locked(session, campaign_id)
    if not _campaign_visible(row, actor):
        raise NotFound("no such campaign")
    now = await clock.now(session)
    if action == "publish" and row.state == "draft" and now >= row.live_to:
        raise Conflict("the campaign's live window is over", code="deadline_passed")
    await CAMPAIGN.fire(session, row, action, actor, now=now, reason=reason)
    return campaign_out(row, actor, now)


async def campaign_history(session: AsyncSession, actor: Actor, campaign_id: str):
    row = await _visible_campaign(session, actor, campaign_id)
    return await history(session, "campaign", row.id)


async def set_eligible(session: AsyncSession, actor: Actor, campaign_id: str,
                       body: CampaignEligibleCreatorsIn) -> CampaignEligibleCreatorsOut:
    campaign = await session.scalar(select(Campaign).where(Campaign.id == campaign_id).with_for_update())
    if not _campaign_visible(campaign, actor):
        raise NotFound("no such campaign")
    wanted = list(dict.fromkeys(body.creator_ids))
    creators = set(await session.scalars(select(Account.id).where(Account.id.in_(wanted),
                                                                  Account.role == "creator"))) if wanted else set()
    for index, creator_id in enumerate(body.creator_ids):
        if creator_id not in creators:
            raise ValidationFailed(f"'{creator_id}' is not a creator", loc=["body", "creator_ids", index])
    await session.execute(delete(CampaignEligibleCreator).where(CampaignEligibleCreator.campaign_id == campaign_id))
    session.add_all([CampaignEligibleCreator(campaign_id=campaign_id, creator_id=c) for c in wanted])
    await session.flush()
    return CampaignEligibleCreatorsOut(campaign_id=campaign_id, creator_ids=sorted(wanted))


async def get_eligible(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignEligibleCreatorsOut:
    await _visible_campaign(session, actor, campaign_id)
    ids = list(await session.scalars(select(CampaignEligibleCreator.creator_id).where(
        CampaignEligibleCreator.campaign_id == campaign_id).order_by(CampaignEligibleCreator.creator_id)))
    return CampaignEligibleCreatorsOut(campaign_id=campaign_id, creator_ids=ids)


# ----------------------------------------------------------------------------------------------
# signups
# ----------------------------------------------------------------------------------------------
def _signup_visible(row: CampaignSignup | None, actor: Actor) -> bool:
    if row is None:
        return False
    if actor.role == "operator":
        return True
    if actor.role == "creator":
        return row.creator_id == actor.id
    if actor.role == "merchant":
        return any(s.shop_id == actor.id for s in row.shops)
    return False


async def signup_outs(session: AsyncSession, rows: list[CampaignSignup], actor: Actor,
                      now: datetime) -> list[CampaignSignupOut]:
    account_ids = {r.creator_id for r in rows} | {s.shop_id for r in rows for s in r.shops}
    names: dict[str, tuple[str | None, str | None]] = {}
    if account_ids:
        for aid, nickname, shop_name in await session.execute(
                select(Account.id, Account.nickname, Account.shop_name).where(Account.id.in_(account_ids))):
            names[aid] = (nickname, shop_name)
    product_ids = {i.product_id for r in rows for i in r.items}
    titles: dict[str, str] = {}
    if product_ids:
        titles = dict((await session.execute(
            select(Product.id, Product.title).where(Product.id.in_(product_ids)))).all())
    out = []
    for r in rows:
        with_products = {i.shop_id for i in r.items}
        items = [i for i in r.items if actor.role != "merchant" or i.shop_id == actor.id]
        out.append(CampaignSignupOut(
            id=r.id, campaign_id=r.campaign_id, creator_id=r.creator_id,
            creator_nickname=names.get(r.creator_id, (None, None))[0], planned_live_at=r.planned_live_at,
            contact=CampaignContactOut(phone=r.contact_phone, wechat=r.contact_wechat), note=r.note,
            shops=[CampaignSignupShopOut(shop_id=s.shop_id, shop_name=names.get(s.shop_id, (None, None))[1],
                                 decision=s.decision, reason=s.decision_reason, decided_at=s.decided_at,
                                 has_products=s.shop_id in with_products,
                                 stock_confirmed=s.stock_confirmed_at is not None,
                                 stock_confirmed_at=s.stock_confirmed_at) for s in r.shops],
            items=[CampaignSignupItemOut(product_id=i.product_id, shop_id=i.shop_id, title=titles.get(i.product_id),
                                 planned_quantity=i.planned_quantity) for i in items],
            traffic_units=r.traffic_units, traffic_note=r.traffic_note, live_session_id=r.live_session_id,
            state=r.state, version=r.version, allowed_actions=CAMPAIGN_SIGNUP.allowed_actions(r, actor, now),
            created_at=r.created_at))
    return out


async def create_signup(session: AsyncSession, actor: Actor,
                       campaign_id: str, body: CampaignSignupCreate) -> CampaignSignupOut:
    campaign = await _visible_campaign(session, actor, campaign_id)
    now = await clock.now(session)
    if not await _is_eligible(session, campaign.id, actor.id):
        raise Forbidden("you are not pre-selected for this campaign; ask the platform", code="not_eligible")
    if campaign.state != "published":
        raise Conflict("the campaign is closed", code="campaign_closed")
    if now >= campaign.signup_deadline:
        raise Conflict("the signup deadline has passed", code="deadline_passed",
                       deadline=campaign.signup_deadline.isoformat())
    if len(set(body.shop_ids)) != len(body.shop_ids):
        raise ValidationFailed("a shop is listed twice", loc=["body", "shop_ids"])
    merchants = set(await session.scalars(select(Account.id).where(Account.id.in_(body.shop_ids),
                                                                    Account.role == "merchant")))
    for index, shop_id in enumerate(body.shop_ids):
        if shop_id not in merchants:
            raise ValidationFailed(f"'{shop_id}' is not a merchant", loc=["body", "shop_ids", index])
    if not campaign.live_from <= body.planned_live_at < campaign.live_to:
        raise ValidationFailed("planned_live_at must be within the campaign's live window",
                               loc=["body", "planned_live_at"])
    taken = await session.scalar(select(CampaignSignup.id).where(
        CampaignSignup.campaign_id == campaign.id, CampaignSignup.creator_id == actor.id,
        CampaignSignup.planned_live_at == body.planned_live_at, CampaignSignup.state.not_in(RELEASED_STATES)))
    if taken:
        raise Conflict("you already signed up for this campaign at this time", code="duplicate_signup",
                       signup_id=taken)
    creator = await session.get(Account, actor.id)
    contact = body.contact
    row = CampaignSignup(
        campaign_id=campaign.id, creator_id=actor.id, planned_live_at=body.planned_live_at,
        contact_phone=contact.phone if contact and "phone" in contact.model_fields_set else creator.contact_phone,
        contact_wechat=contact.wechat if contact and "wechat" in contact.model_fields_set else creator.contact_wechat,
        note=body.note, created_at=now, campaign=campaign,
        shops=[CampaignSignupShop(shop_id=s, position=i, decision="pending") for i, s in enumerate(body.shop_ids)],
        items=[])
    try:
        async with session.begin_nested():
            await CAMPAIGN_SIGNUP.create(session, row, actor, now=now)
    except IntegrityError:
        raise Conflict("you already signed up for this campaign at this time", code="duplicate_signup") from None
    await schedule(session, "campaign_signup", row.id, "expire", campaign.product_deadline)
    for shop_id in body.shop_ids:
        await notify(session, shop_id, "campaign_signup.created", "达人报名待确认",
                     f"A creator listed your shop in a signup to '{campaign.title}'.",
                     {"signup_id": row.id, "campaign_id": campaign.id})
    return (await signup_outs(session, [row], actor, now))[0]


async def get_signup(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignupOut:
    await fire_due(session, entity_id=signup_id)
    row = await session.get(CampaignSignup, signup_id, populate_existing=True)
    if not _signup_visible(row, actor):
        raise NotFound("no such signup")
    return (await signup_outs(session, [row], actor, await clock.now(session)))[0]


async def signup_history(session: AsyncSession, actor: Actor, signup_id: str):
    row = await session.get(CampaignSignup, signup_id)
    if not _signup_visible(row, actor):
        raise NotFound("no such signup")
    await fire_due(session, entity_id=signup_id)
    return await history(session, "campaign_signup", signup_id)


async def list_signups(session: AsyncSession, actor: Actor, campaign_id: str, *, state: CampaignSignupState | None,
                       limit: int, cursor: str | None) -> tuple[list[CampaignSignupOut], str | None]:
    campaign = await _visible_campaign(session, actor, campaign_id)
    await fire_due(session, machines=["campaign_signup"])
    query = select(CampaignSignup).where(CampaignSignup.campaign_id == campaign.id) \
        .execution_options(populate_existing=True)
    if actor.role == "creator":
        query = query.where(CampaignSignup.creator_id == actor.id)
    elif actor.role == "merchant":
        query = query.where(exists().where(CampaignSignupShop.signup_id == CampaignSignup.id,
                                           CampaignSignupShop.shop_id == actor.id))
    if state is not None:
        query = query.where(CampaignSignup.state == state.value)
    rows, next_cursor = await keyset_page(session, query, CampaignSignup.id, limit=limit, cursor=cursor)
    return await signup_outs(session, rows, actor, await clock.now(session)), next_cursor


async def _load_signup(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignup:
    await fire_due(session, entity_id=signup_id)
    row = await CAMPAIGN_SIGNUP.load_locked(session, signup_id)
    if not _signup_visible(row, actor):
        raise NotFound("no such signup")
    return row


def _deadline_passed(row: CampaignSignup, action: str, now: datetime) -> None:
    sources = {s for r in CAMPAIGN_SIGNUP.rules_for(action) for s in r.source}
    if row.state in sources and now >= row.campaign.product_deadline:
        raise Conflict("the product deadline has passed", code="deadline_passed",
                       deadline=row.campaign.product_deadline.isoformat())


async def _finish(session: AsyncSession, row: CampaignSignup, actor: Actor, now: datetime) -> CampaignSignupOut:
    await session.flush()
    return (await signup_outs(session, [row], actor, now))[0]


async def merchant_decide(session: AsyncSession, actor: Actor, signup_id: str, approve: bool,
                          reason: str | None = None) -> CampaignSignupOut:
    action = "merchant-approve" if approve else "merchant-reject"
    row = await _load_signup(session, actor, signup_id)
    now = await clock.now(session)
    if actor.role == "merchant":
        _deadline_passed(row, action, now)
    before = row.state
    await CAMPAIGN_SIGNUP.fire(session, row, action, actor, now=now, reason=reason,
                               extra={"shop_id": actor.id}, event_data={"shop_id": actor.id})
    shop = next(s for s in row.shops if s.shop_id == actor.id)
    shop.decision = "approved" if approve else "rejected"
    shop.decision_reason = reason
    shop.decided_at = now
    if row.state != before:
        await notify(session, row.creator_id, f"campaign_signup.{row.state}", "报名商家确认结果",
                     f"Every listed shop decided on your signup: {row.state}.", {"signup_id": row.id})
    return await _finish(session, row, actor, now)


async def simple_action(session: AsyncSession, actor: Actor, signup_id: str, action: str,
                        reason: str | None = None) -> CampaignSignupOut:
    """platform-approve, platform-reject, platform-confirm-stock, withdraw."""
    row = await _load_signup(session, actor, signup_id)
    now = await clock.now(session)
    await CAMPAIGN_SIGNUP.fire(session, row, action, actor, now=now, reason=reason)
    if actor.id != row.creator_id:
        await notify(session, row.creator_id, f"campaign_signup.{row.state}", "活动报名状态更新",
                     f"Your signup is now {row.state}.", {"signup_id": row.id})
    return await _finish(session, row, actor, now)


async def grant_traffic(session: AsyncSession, actor: Actor,
                       signup_id: str, body: CampaignGrantTrafficIn) -> CampaignSignupOut:
    row = await _load_signup(session, actor, signup_id)
    now = await clock.now(session)
    await CAMPAIGN_SIGNUP.fire(session, row, "grant-traffic", actor, now=now, reason=body.note,
                               event_data={"traffic_units": body.traffic_units})
    row.traffic_units = body.traffic_units
    row.traffic_note = body.note
    await notify(session, row.creator_id, "campaign_signup.traffic_granted", "流量扶持已发放",
                 f"{body.traffic_units} traffic units granted; submit your products.", {"signup_id": row.id})
    return await _finish(session, row, actor, now)


async def submit_products(session: AsyncSession, actor: Actor,
                         signup_id: str, body: CampaignSubmitProductsIn) -> CampaignSignupOut:
    row = await _load_signup(session, actor, signup_id)
    now = await clock.now(session)
    if row.creator_id == actor.id:
        _deadline_passed(row, "submit-products", now)
    revision = row.state == "products_submitted"
    await CAMPAIGN_SIGNUP.fire(session, row, "submit-products", actor, now=now,
                               event_data={"revision": revision})
    approved = {s.shop_id for s in row.shops if s.decision == "approved"}
    ids = [i.product_id for i in body.items]
    products = {p.id: p for p in await session.scalars(select(Product).where(Product.id.in_(ids)))}
    seen: set[str] = set()
    for index, item in enumerate(body.items):
        product = products.get(item.product_id)
        if product is None or product.shop_id not in approved:
            raise ValidationFailed("not a product of a shop that approved this signup",
                                   loc=["body", "items", index, "product_id"])
        if product.status != "on_sale":
            raise ValidationFailed("this product is off sale", loc=["body", "items", index, "product_id"])
        if item.product_id in seen:
            raise ValidationFailed("a product is listed twice", loc=["body", "items", index, "product_id"])
        seen.add(item.product_id)
    row.items.clear()
    await session.flush()
    row.items.extend(CampaignSignupItem(product_id=i.product_id, shop_id=products[i.product_id].shop_id,
                                        position=n, planned_quantity=i.planned_quantity)
                     for n, i in enumerate(body.items))
    for shop in row.shops:
        shop.stock_confirmed_at = None
    for shop_id in {products[i].shop_id for i in ids}:
        await notify(session, shop_id, "campaign_signup.products_submitted", "达人已提报商品，请确认库存",
                     "A creator planned products of your shop; check and confirm the stock.", {"signup_id": row.id})
    return await _finish(session, row, actor, now)


async def merchant_confirm_stock(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignupOut:
    row = await _load_signup(session, actor, signup_id)
    now = await clock.now(session)
    await CAMPAIGN_SIGNUP.fire(session, row, "merchant-confirm-stock", actor, now=now,
                               extra={"shop_id": actor.id}, event_data={"shop_id": actor.id})
    shop = next(s for s in row.shops if s.shop_id == actor.id)
    shop.stock_confirmed_at = now
    return await _finish(session, row, actor, now)


@live_session_started.connect
async def _on_live_started(session: AsyncSession, live_session: LiveSession) -> None:
    """A session of the creator starting inside a campaign's live window moves its `ready`
    signup (the one whose planned_live_at is nearest, per campaign) to `live`."""
    rows = list(await session.scalars(
        select(CampaignSignup).join(Campaign, Campaign.id == CampaignSignup.campaign_id).where(
            CampaignSignup.creator_id == live_session.host_id, CampaignSignup.state == "ready",
            Campaign.live_from <= live_session.started_at, Campaign.live_to > live_session.started_at)))
    chosen: dict[str, CampaignSignup] = {}
    for r in rows:
        best = chosen.get(r.campaign_id)
        if best is None or abs(r.planned_live_at - live_session.started_at) < \
                abs(best.planned_live_at - live_session.started_at):
            chosen[r.campaign_id] = r
    now = await clock.now(session)
    for r in chosen.values():
        row = await CAMPAIGN_SIGNUP.load_locked(session, r.id)
        if row.state != "ready":
            continue
        await CAMPAIGN_SIGNUP.fire(session, row, "start-live", SYSTEM, now=now,
                                   event_data={"live_session_id": live_session.id})
        row.live_session_id = live_session.id
    await session.flush()


@live_session_ended.connect
async def _on_live_ended(session: AsyncSession, live_session: LiveSession) -> None:
    ids = list(await session.scalars(select(CampaignSignup.id).where(
        CampaignSignup.live_session_id == live_session.id, CampaignSignup.state == "live")))
    now = await clock.now(session)
    for signup_id in ids:
        row = await CAMPAIGN_SIGNUP.load_locked(session, signup_id)
        if row.state == "live":
            await CAMPAIGN_SIGNUP.fire(session, row, "end-live", SYSTEM, now=now,
                                       event_data={"live_session_id": live_session.id})


# ----------------------------------------------------------------------------------------------
# merchant tools
# ----------------------------------------------------------------------------------------------
async def stock_plan(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignStockPlanOut:
    campaign = await _visible_campaign(session, actor, campaign_id)
    await fire_due(session, machines=["campaign_signup"])
    where = (CampaignSignup.campaign_id == campaign.id, CampaignSignup.state.in_(PLANNED_STATES),
             Product.shop_id == actor.id)
    totals = await session.execute(
        select(Product.id, Product.title, Product.inventory, func.sum(CampaignSignupItem.planned_quantity))
        .join(CampaignSignupItem, CampaignSignupItem.product_id == Product.id)
        .join(CampaignSignup, CampaignSignup.id == CampaignSignupItem.signup_id)
        .where(*where).group_by(Product.id, Product.title, Product.inventory).order_by(Product.id))
    details = await session.execute(
        select(CampaignSignupItem.product_id, CampaignSignup.creator_id, Account.nickname, CampaignSignup.id,
               CampaignSignupItem.planned_quantity, CampaignSignup.contact_phone, CampaignSignup.contact_wechat)
        .join(CampaignSignup, CampaignSignup.id == CampaignSignupItem.signup_id)
        .join(Product, Product.id == CampaignSignupItem.product_id)
        .join(Account, Account.id == CampaignSignup.creator_id)
        .where(*where).order_by(CampaignSignupItem.product_id, CampaignSignup.id))
    creators: dict[str, list[CampaignStockPlanCreator]] = {}
    for product_id, creator_id, nickname, signup_id, qty, phone, wechat in details:
        creators.setdefault(product_id, []).append(CampaignStockPlanCreator(
            creator_id=creator_id, nickname=nickname, signup_id=signup_id, planned_quantity=qty,
            contact=CampaignContactOut(phone=phone, wechat=wechat)))
    items = [CampaignStockPlanRow(product_id=pid, title=title, inventory=inventory, planned_total=int(total),
                          at_risk=int(total) > inventory, creators=creators.get(pid, []))
             for pid, title, inventory, total in totals]
    return CampaignStockPlanOut(campaign_id=campaign.id, items=items)


EXPORT_HEADER = ["product_id", "product", "creator_id", "creator", "contact_phone", "wechat",
                 "planned_quantity", "inventory", "at_risk"]


def _export_rows(plan: CampaignStockPlanOut) -> list[list[Any]]:
    return [[row.product_id, row.title, c.creator_id, c.nickname or "", c.contact.phone or "",
             c.contact.wechat or "", c.planned_quantity, row.inventory, row.at_risk]
            for row in plan.items for c in row.creators]


def export_csv(plan: CampaignStockPlanOut) -> bytes:
    return csv_bytes(EXPORT_HEADER, ([("yes" if v else "no") if isinstance(v, bool) else v for v in r]
                                     for r in _export_rows(plan)))


_SHEET = "xl/worksheets/sheet1.xml"
_COLUMNS = [chr(ord("A") + i) for i in range(len(EXPORT_HEADER))]


def _sheet_rows(rows: list[list[Any]], first: int) -> str:
    """`<row>` elements as openpyxl's write-only sheet writes them (inline strings, `t="n"`,
    `t="b"`, no cell for None, an empty string as an empty inline string, control characters
    dropped), built as text: openpyxl spends ~40 µs per cell, which is seconds at 150,000 cells."""
    from xml.sax.saxutils import escape

    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    out: list[str] = []
    for number, row in enumerate(rows, start=first):
        out.append(f'<row r="{number}">')
        for column, value in zip(_COLUMNS, row, strict=True):
            ref = f"{column}{number}"
            if value is None:
                continue
            if isinstance(value, bool):
                out.append(f'<c r="{ref}" t="b"><v>{int(value)}</v></c>')
            elif isinstance(value, int):
                out.append(f'<c r="{ref}" t="n"><v>{value}</v></c>')
            elif value == "":
                out.append(f'<c r="{ref}" t="inlineStr" />')
            else:
                text = escape(ILLEGAL_CHARACTERS_RE.sub("", str(value)))
                space = ' xml:space="preserve"' if text != text.strip() else ""
                out.append(f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>')
        out.append("</row>")
    return "".join(out)


def export_xlsx(plan: CampaignStockPlanOut) -> bytes:
    """openpyxl builds the workbook with the header row (styles, theme, properties: the same
    package as every other download); the data rows are then written into its sheet as text."""
    import io
    import zipfile

    template = xlsx_bytes("stock plan", EXPORT_HEADER, [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(template)) as source, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == _SHEET:
                head, tail = data.decode("utf-8").split("</sheetData>", 1)
                data = (head + _sheet_rows(_export_rows(plan), 2) + "</sheetData>" + tail).encode("utf-8")
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _card_out(card: CampaignCard) -> CampaignCardOut:
    return CampaignCardOut(campaign_id=card.campaign_id, creator_id=card.creator_id,
                   contact=CampaignContactOut(phone=card.contact_phone, wechat=card.contact_wechat),
                   intended_merchants=list(card.intended_merchants or []),
                   cooperation_note=card.cooperation_note, updated_at=card.updated_at)


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_creators(session: AsyncSession, actor: Actor, campaign_id: str, *, q: str | None,
                        level_min: int | None, limit: int, cursor: str | None):
    campaign = await _visible_campaign(session, actor, campaign_id)
    query = select(Account).join(CampaignEligibleCreator, CampaignEligibleCreator.creator_id == Account.id) \
        .where(CampaignEligibleCreator.campaign_id == campaign.id)
    if q:
        query = query.where(Account.nickname.ilike(_like(q), escape="\\"))
    if level_min is not None:
        query = query.where(Account.level >= level_min)
    rows, next_cursor = await keyset_page(session, query, Account.id, limit=limit, cursor=cursor)
    ids = [r.id for r in rows]
    gmv: dict[str, int] = {}
    cards: dict[str, CampaignCard] = {}
    if ids:
        now = await clock.now(session)
        gmv = {cid: int(total or 0) for cid, total in await session.execute(
            select(SalesOrder.creator_id, gmv_sum())
            .where(SalesOrder.creator_id.in_(ids), SalesOrder.paid_at >= now - GMV_WINDOW,
                   SalesOrder.paid_at <= now)
            .group_by(SalesOrder.creator_id))}
        cards = {c.creator_id: c for c in await session.scalars(select(CampaignCard).where(
            CampaignCard.campaign_id == campaign.id, CampaignCard.creator_id.in_(ids)))}
    items = [CampaignCreatorOut(creator_id=r.id, nickname=r.nickname, level=r.level, followers=r.followers,
                                gmv_30d_fen=gmv.get(r.id, 0),
                                card=_card_out(cards[r.id]) if r.id in cards else None) for r in rows]
    return items, next_cursor


async def put_card(session: AsyncSession, actor: Actor, campaign_id: str, body: CampaignCardIn) -> CampaignCardOut:
    campaign = await _visible_campaign(session, actor, campaign_id)
    if not await _is_eligible(session, campaign.id, actor.id):
        raise Forbidden("you are not pre-selected for this campaign", code="not_eligible")
    now = await clock.now(session)
    card = await session.get(CampaignCard, (campaign.id, actor.id), with_for_update=True)
    if card is None:
        card = CampaignCard(campaign_id=campaign.id, creator_id=actor.id)
        session.add(card)
    contact = body.contact or Contact()
    card.contact_phone = contact.phone
    card.contact_wechat = contact.wechat
    card.intended_merchants = list(body.intended_merchants)
    card.cooperation_note = body.cooperation_note
    card.updated_at = now
    await session.flush()
    return _card_out(card)


async def _intent_outs(session: AsyncSession, rows: list[CampaignIntent]) -> list[CampaignIntentOut]:
    shops: dict[str, str | None] = {}
    if rows:
        shops = dict((await session.execute(select(Account.id, Account.shop_name).where(
            Account.id.in_({r.merchant_id for r in rows})))).all())
    return [CampaignIntentOut(id=r.id, campaign_id=r.campaign_id, merchant_id=r.merchant_id,
                      shop_name=shops.get(r.merchant_id), description=r.description,
                      creator_ids=list(r.creator_ids or []), created_at=r.created_at) for r in rows]


async def create_intent(session: AsyncSession, actor: Actor,
                       campaign_id: str, body: CampaignIntentIn) -> CampaignIntentOut:
    campaign = await _visible_campaign(session, actor, campaign_id)
    if campaign.state != "published":
        raise Conflict("the campaign is closed", code="campaign_closed")
    wanted = list(dict.fromkeys(body.creator_ids or []))
    if wanted:
        eligible = set(await session.scalars(select(CampaignEligibleCreator.creator_id).where(
            CampaignEligibleCreator.campaign_id == campaign.id, CampaignEligibleCreator.creator_id.in_(wanted))))
        for index, creator_id in enumerate(body.creator_ids or []):
            if creator_id not in eligible:
                raise ValidationFailed(f"'{creator_id}' is not a pre-selected creator of this campaign",
                                       loc=["body", "creator_ids", index])
    row = CampaignIntent(campaign_id=campaign.id, merchant_id=actor.id, description=body.description,
                         creator_ids=wanted, created_at=await clock.now(session))
    session.add(row)
    await session.flush()
    for creator_id in wanted:
        await notify(session, creator_id, "campaign_intent.created", "商家发布了合作意向",
                     body.description[:200], {"intent_id": row.id, "campaign_id": campaign.id})
    return (await _intent_outs(session, [row]))[0]


async def list_intents(session: AsyncSession, actor: Actor, campaign_id: str, *, limit: int, cursor: str | None):
    campaign = await _visible_campaign(session, actor, campaign_id)
    query = select(CampaignIntent).where(CampaignIntent.campaign_id == campaign.id)
    if actor.role == "merchant":
        query = query.where(CampaignIntent.merchant_id == actor.id)
    elif actor.role == "creator" and not await _is_eligible(session, campaign.id, actor.id):
        raise Forbidden("you are not pre-selected for this campaign", code="not_eligible")
    rows, next_cursor = await keyset_page(session, query, CampaignIntent.id, limit=limit, cursor=cursor)
    return await _intent_outs(session, rows), next_cursor


# ----------------------------------------------------------------------------------------------
# demo data
# ----------------------------------------------------------------------------------------------
DEMO_TITLE = "双11 直播间奖励 (demo)"


async def demo_step(session: AsyncSession, accounts: dict[str, Account]) -> list[str]:
    """A published campaign with the demo creator pre-selected and its signup listing the demo
    merchant (待商家确认). Idempotent (by title)."""
    operator, creator, merchant = accounts.get("operator"), accounts.get("creator"), accounts.get("merchant")
    if not (operator and creator and merchant):
        return []
    if await session.scalar(select(Campaign.id).where(Campaign.title == DEMO_TITLE)):
        return []
    now = await clock.now(session)
    op = Actor(operator.id, "operator")
    campaign = await create_campaign(session, op, CampaignCreate(
        title=DEMO_TITLE, description="平台圈定达人报名，商家与平台审核，流量扶持，提报商品，确认库存，开播。",
        signup_deadline=now + timedelta(days=3), product_deadline=now + timedelta(days=5),
        live_from=now + timedelta(days=6), live_to=now + timedelta(days=13)))
    await set_eligible(session, op, campaign.id, CampaignEligibleCreatorsIn(creator_ids=[creator.id]))
    await campaign_action(session, op, campaign.id, "publish")
    signup = await create_signup(session, Actor(creator.id, "creator"), campaign.id, CampaignSignupCreate(
        shop_ids=[merchant.id], planned_live_at=now + timedelta(days=7), note="想带旗舰手机"))
    return [f"  campaign {campaign.id} published; signup {signup.id} awaits the merchant"]


def _register_demo() -> None:
    from app.demo import DEMO_STEPS

    if demo_step not in DEMO_STEPS:
        DEMO_STEPS.append(demo_step)


_register_demo()
