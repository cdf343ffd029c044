"""Rules and services of the live bases module (达人直播基地): bases, creator and shop bindings,
the product pool, QR check-in with its three rules, cooperations and the base's statistics."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import jwt
import segno
from pydantic import BaseModel, Field
from sqlalchemy import and_, case, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.db.models.accounts import Account, Product
from app.db.models.facts import LiveSession, SalesOrder
from app.db.models.live_bases import CheckIn, Cooperation, CreatorBinding, LiveBase, PoolItem, ShopBinding
from app.db.pagination import keyset_page
from app.domain import clock
from app.domain.accounts import require_role
from app.domain.errors import Conflict, NotFound, ValidationFailed
from app.domain.notifications import notify
from app.domain.products import ProductOut
from app.domain.schemas import Strict
from app.domain.signals import account_changed, product_changed
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import SYSTEM, Actor, Workflow
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING
from app.state.timers import fire_due, on_timer, schedule

INVITATION_DAYS = 7
PENDING_CHECK_IN_MINUTES = 10
MAX_LEVEL_FOR_NEW_COOPERATION = 4
HOME_PAGE_PRODUCTS = 100
TOKEN_AUDIENCE = "lc:check-in"

HEAD_AGENCY_OTHER_BASE = "head_agency_other_base"
LEVEL_TOO_HIGH = "level_too_high"
COOPERATION_CONFLICT = "cooperation_conflict"


# -- shapes ----------------------------------------------------------------------------------
class LiveBaseCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    address: str = Field(min_length=1, max_length=300)


class LiveBaseOut(BaseModel):
    id: str
    agency_id: str
    name: str
    address: str
    created_at: datetime


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
    state: str
    version: int
    allowed_actions: list[str]
    invited_at: datetime
    expires_at: datetime
    began_at: datetime | None
    ended_at: datetime | None
    live_count: int | None = Field(description="live sessions since the binding began (null before)")


class ShopBindingCreate(Strict):
    shop_id: str = Field(max_length=40)
    type: Literal["live_base"] = "live_base"


class ShopBindingOut(BaseModel):
    id: str
    agency_id: str
    shop_id: str
    type: str
    state: str
    version: int
    allowed_actions: list[str]
    invited_at: datetime
    expires_at: datetime
    began_at: datetime | None
    ended_at: datetime | None


class PoolItemOut(BaseModel):
    item_id: str
    product: ProductOut
    shop: ShopCard
    qualifies: bool
    listed: bool


class CheckInCodeOut(BaseModel):
    token: str
    url: str
    expires_at: datetime


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
    state: str
    version: int
    allowed_actions: list[str]
    eligibility: Eligibility
    created_at: datetime
    expires_at: datetime
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    cooperation_id: str | None


class CooperationOut(BaseModel):
    id: str
    base_id: str
    agency_id: str
    creator_id: str
    state: str
    version: int
    allowed_actions: list[str]
    started_at: datetime
    ends_at: datetime
    ended_at: datetime | None


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
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    gmv_fen: int
    orders: int
    check_ins: int
    live_sessions: int
    by_creator: list[CreatorStats]
    by_product: list[ProductStats]

    model_config = {"populate_by_name": True}


# -- helpers ---------------------------------------------------------------------------------
def _is_operator(actor: Actor) -> bool:
    return actor.role == "operator"


async def _lock_account(session: AsyncSession, account_id: str) -> Account | None:
    """Serialises the decisions about one creator (or shop): `SELECT … FOR UPDATE` on its
    account row on PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE anyway."""
    return await session.scalar(select(Account).where(Account.id == account_id)
                                .with_for_update().execution_options(populate_existing=True))


def _shop_card(account: Account) -> ShopCard:
    score = account.experience_score
    return ShopCard(id=account.id, shop_name=account.shop_name,
                    experience_score=float(score) if score is not None else None)


def _base_out(base: LiveBase) -> LiveBaseOut:
    return LiveBaseOut(id=base.id, agency_id=base.agency_id, name=base.name, address=base.address,
                       created_at=base.created_at)


# -- bases -----------------------------------------------------------------------------------
async def create_base(session: AsyncSession, actor: Actor, body: LiveBaseCreate) -> LiveBaseOut:
    base = LiveBase(agency_id=actor.id, name=body.name, address=body.address, created_at=await clock.now(session))
    session.add(base)
    await session.flush()
    return _base_out(base)


async def _merchant_agencies(session: AsyncSession, merchant_id: str) -> list[str]:
    return list(await session.scalars(select(ShopBinding.agency_id).where(
        ShopBinding.shop_id == merchant_id, ShopBinding.state == "active")))


async def _base_visible(session: AsyncSession, base: LiveBase, actor: Actor) -> bool:
    if actor.role in ("operator", "creator"):
        return True
    if actor.role == "agency":
        return base.agency_id == actor.id
    if actor.role == "merchant":
        return base.agency_id in await _merchant_agencies(session, actor.id)
    return False


async def get_base_row(session: AsyncSession, actor: Actor, base_id: str) -> LiveBase:
    base = await session.get(LiveBase, base_id)
    if base is None or not await _base_visible(session, base, actor):
        raise NotFound("no such live base")
    return base


async def _owned_base(session: AsyncSession, actor: Actor, base_id: str) -> LiveBase:
    base = await session.get(LiveBase, base_id)
    if base is None or not (base.agency_id == actor.id or _is_operator(actor)):
        raise NotFound("no such live base")
    return base


async def list_bases(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None):
    query = select(LiveBase)
    if actor.role == "agency":
        query = query.where(LiveBase.agency_id == actor.id)
    elif actor.role == "merchant":
        query = query.where(LiveBase.agency_id.in_(
            select(ShopBinding.agency_id).where(ShopBinding.shop_id == actor.id, ShopBinding.state == "active")))
    elif actor.role not in ("creator", "operator"):
        query = query.where(False)
    rows, next_cursor = await keyset_page(session, query, LiveBase.id, limit=limit, cursor=cursor)
    return [_base_out(b) for b in rows], next_cursor


async def base_detail(session: AsyncSession, actor: Actor, base_id: str) -> LiveBaseDetail:
    base = await get_base_row(session, actor, base_id)
    agency = await session.get(Account, base.agency_id)
    assert agency is not None
    shops = list(await session.scalars(
        select(Account).join(ShopBinding, ShopBinding.shop_id == Account.id)
        .where(ShopBinding.agency_id == base.agency_id, ShopBinding.state == "active").order_by(Account.id)))
    products = list(await session.scalars(
        select(Product).join(PoolItem, PoolItem.product_id == Product.id)
        .where(PoolItem.agency_id == base.agency_id, PoolItem.listed.is_(True))
        .order_by(PoolItem.id.desc()).limit(HOME_PAGE_PRODUCTS)))
    return LiveBaseDetail(**_base_out(base).model_dump(),
                          agency=AgencyCard(id=agency.id, name=agency.org_name, head_annual=bool(agency.head_annual)),
                          shops=[_shop_card(s) for s in shops],
                          products=[ProductOut.model_validate(p) for p in products])


# -- creator bindings ------------------------------------------------------------------------
async def _live_count(session: AsyncSession, row: CreatorBinding) -> int | None:
    if row.began_at is None:
        return None
    query = select(func.count()).select_from(LiveSession).where(
        LiveSession.host_id == row.creator_id, LiveSession.started_at >= row.began_at)
    if row.ended_at is not None:
        query = query.where(LiveSession.started_at < row.ended_at)
    return int(await session.scalar(query) or 0)


async def creator_binding_out(session: AsyncSession, row: CreatorBinding, actor: Actor,
                              now: datetime | None = None) -> CreatorBindingOut:
    now = now or await clock.now(session)
    agency = await session.get(Account, row.agency_id)
    return CreatorBindingOut(
        id=row.id, agency_id=row.agency_id, creator_id=row.creator_id, commission_bp=row.commission_bp,
        strong=bool(agency and agency.head_annual), state=row.state, version=row.version,
        allowed_actions=CREATOR_BINDING.allowed_actions(row, actor, now), invited_at=row.invited_at,
        expires_at=row.expires_at, began_at=row.began_at, ended_at=row.ended_at,
        live_count=await _live_count(session, row))


@dataclass(frozen=True)
class _BindingKind:
    """What differs between a creator binding and a shop binding: the invited party."""

    model: type[CreatorBinding] | type[ShopBinding]
    workflow: Workflow
    party: str  # the invited account's column
    party_role: str  # and its role
    noun: str

    def sees(self, row: CreatorBinding | ShopBinding, actor: Actor) -> bool:
        return _is_operator(actor) or actor.id in (row.agency_id, getattr(row, self.party))


_CREATOR = _BindingKind(CreatorBinding, CREATOR_BINDING, "creator_id", "creator", "creator")
_SHOP = _BindingKind(ShopBinding, SHOP_BINDING, "shop_id", "merchant", "shop")


async def _one_invitation_at_a_time(session: AsyncSession, agency_id: str) -> None:
    """Lock the inviting agency's account row: its invitations are checked for an open one and
    created one at a time, so two racing invitations of one pair never both succeed."""
    await session.execute(select(Account.id).where(Account.id == agency_id).with_for_update())


async def _invite(session: AsyncSession, actor: Actor, kind: _BindingKind, party_id: str, fields: dict[str, Any],
                  message: tuple[str, str]) -> Any:
    await require_role(session, party_id, kind.party_role, loc=["body", kind.party])
    await _one_invitation_at_a_time(session, actor.id)
    now = await clock.now(session)
    model = kind.model
    existing = await session.scalar(select(model).where(
        model.agency_id == actor.id, getattr(model, kind.party) == party_id,
        or_(model.state == "active", and_(model.state == "invited", model.expires_at > now))))
    if existing is not None:
        code = "already_bound" if existing.state == "active" else "already_invited"
        raise Conflict(f"this {kind.noun} is already bound to or invited by this agency", code=code,
                       binding_id=existing.id)
    row = model(agency_id=actor.id, **{kind.party: party_id}, **fields, invited_at=now,
                expires_at=now + timedelta(days=INVITATION_DAYS))
    await kind.workflow.create(session, row, actor, now=now)
    await schedule(session, kind.workflow.name, row.id, "expire", row.expires_at)
    await notify(session, party_id, f"{kind.workflow.name}.invited", *message, {"binding_id": row.id})
    return row


async def _get_binding(session: AsyncSession, actor: Actor, kind: _BindingKind, binding_id: str) -> Any:
    await fire_due(session, entity_id=binding_id)
    row = await session.get(kind.model, binding_id, populate_existing=True)
    if row is None or not kind.sees(row, actor):
        raise NotFound(f"no such {kind.noun} binding")
    return row


async def _list_bindings(session: AsyncSession, actor: Actor, kind: _BindingKind, *, state: str | None, limit: int,
                         cursor: str | None):
    await fire_due(session, machines=[kind.workflow.name])
    model = kind.model
    query = select(model)
    if actor.role == "agency":
        query = query.where(model.agency_id == actor.id)
    elif actor.role == kind.party_role:
        query = query.where(getattr(model, kind.party) == actor.id)
    elif not _is_operator(actor):
        query = query.where(False)
    if state:
        query = query.where(model.state == state)
    return await keyset_page(session, query, model.id, limit=limit, cursor=cursor)


async def create_creator_binding(session: AsyncSession, actor: Actor, body: CreatorBindingCreate) -> CreatorBinding:
    return await _invite(session, actor, _CREATOR, body.creator_id, {"commission_bp": body.commission_bp},
                         ("绑定邀约", "An agency invites you to bind (达人绑定)."))


async def get_creator_binding(session: AsyncSession, actor: Actor, binding_id: str) -> CreatorBinding:
    return await _get_binding(session, actor, _CREATOR, binding_id)


async def list_creator_bindings(session: AsyncSession, actor: Actor, *, state: str | None, limit: int,
                                cursor: str | None):
    return await _list_bindings(session, actor, _CREATOR, state=state, limit=limit, cursor=cursor)


async def patch_creator_binding(session: AsyncSession, actor: Actor, binding_id: str,
                                body: CreatorBindingPatch) -> CreatorBinding:
    await fire_due(session, entity_id=binding_id)
    row = await CREATOR_BINDING.load_locked(session, binding_id)
    if row.agency_id != actor.id:
        raise NotFound("no such creator binding")
    if row.state != "active":
        raise Conflict("the commission is set while the binding is active", code="binding_not_active",
                       state=row.state)
    row.commission_bp = body.commission_bp
    await session.flush()
    return row


async def fire_creator_binding(session: AsyncSession, actor: Actor, binding_id: str, action: str,
                               reason: str | None) -> CreatorBinding:
    peek = await _get_binding(session, actor, _CREATOR, binding_id)
    await _lock_account(session, peek.creator_id)  # one creator's accepts are decided one at a time
    row = await CREATOR_BINDING.load_locked(session, binding_id)
    now = await clock.now(session)
    if action == "accept" and CREATOR_BINDING.can(row, action, actor, now):
        other = await session.scalar(select(CreatorBinding.id).where(
            CreatorBinding.creator_id == row.creator_id, CreatorBinding.state == "active",
            CreatorBinding.id != row.id))
        if other is not None:
            raise Conflict("you already have an active binding: terminate it first", code="already_bound",
                           binding_id=other)
    await CREATOR_BINDING.fire(session, row, action, actor, now=now, reason=reason)
    if row.state == "active":
        row.began_at = now
    elif row.state == "terminated":
        row.ended_at = now
    await session.flush()
    return row


# -- shop bindings & the pool ----------------------------------------------------------------
def shop_binding_out(row: ShopBinding, actor: Actor, now: datetime) -> ShopBindingOut:
    return ShopBindingOut(id=row.id, agency_id=row.agency_id, shop_id=row.shop_id, type=row.binding_type,
                          state=row.state, version=row.version,
                          allowed_actions=SHOP_BINDING.allowed_actions(row, actor, now),
                          invited_at=row.invited_at, expires_at=row.expires_at, began_at=row.began_at,
                          ended_at=row.ended_at)


async def create_shop_binding(session: AsyncSession, actor: Actor, body: ShopBindingCreate) -> ShopBinding:
    return await _invite(session, actor, _SHOP, body.shop_id, {"binding_type": body.type},
                         ("直播基地合作邀约", "An agency invites your shop to a live base cooperation."))


async def get_shop_binding(session: AsyncSession, actor: Actor, binding_id: str) -> ShopBinding:
    return await _get_binding(session, actor, _SHOP, binding_id)


async def list_shop_bindings(session: AsyncSession, actor: Actor, *, state: str | None, limit: int,
                             cursor: str | None):
    return await _list_bindings(session, actor, _SHOP, state=state, limit=limit, cursor=cursor)


async def fire_shop_binding(session: AsyncSession, actor: Actor, binding_id: str, action: str,
                            reason: str | None) -> ShopBinding:
    await _get_binding(session, actor, _SHOP, binding_id)
    row = await SHOP_BINDING.load_locked(session, binding_id)
    now = await clock.now(session)
    await SHOP_BINDING.fire(session, row, action, actor, now=now, reason=reason)
    if row.state == "active":
        row.began_at = now
        await _sync_shop_pool(session, row.agency_id, row.shop_id, now)
    elif row.state == "terminated":
        row.ended_at = now
        await session.execute(delete(PoolItem).where(PoolItem.agency_id == row.agency_id,
                                                     PoolItem.shop_id == row.shop_id))
    await session.flush()
    return row


def _qualifies(product: Product, shop: Account) -> bool:
    threshold = Decimal(str(get_settings().pool_min_experience_score))
    return (product.status == "on_sale" and bool(product.brand and product.brand.strip())
            and shop.experience_score is not None and Decimal(shop.experience_score) >= threshold)


async def _upsert_item(session: AsyncSession, agency_id: str, product: Product, shop: Account,
                       now: datetime) -> None:
    qualifies = _qualifies(product, shop)
    item = await session.scalar(select(PoolItem).where(PoolItem.agency_id == agency_id,
                                                       PoolItem.product_id == product.id))
    if item is None:
        session.add(PoolItem(agency_id=agency_id, shop_id=shop.id, product_id=product.id, qualifies=qualifies,
                             listed=False, created_at=now, updated_at=now))
    elif item.qualifies != qualifies or (item.listed and not qualifies):
        item.qualifies = qualifies
        if not qualifies:
            item.listed = False  # an item that stops qualifying is unlisted
        item.updated_at = now


async def _sync_shop_pool(session: AsyncSession, agency_id: str, shop_id: str, now: datetime) -> None:
    shop = await session.get(Account, shop_id)
    if shop is None:
        return
    for product in await session.scalars(select(Product).where(Product.shop_id == shop_id)):
        await _upsert_item(session, agency_id, product, shop, now)
    await session.flush()


@product_changed.connect
async def _on_product_changed(session: AsyncSession, product: Product) -> None:
    agencies = list(await session.scalars(select(ShopBinding.agency_id).where(
        ShopBinding.shop_id == product.shop_id, ShopBinding.state == "active")))
    if not agencies:
        return
    shop = await session.get(Account, product.shop_id)
    if shop is None:
        return
    now = await clock.now(session)
    for agency_id in agencies:
        await _upsert_item(session, agency_id, product, shop, now)
    await session.flush()


@account_changed.connect
async def _on_account_changed(session: AsyncSession, account: Account, fields: set[str]) -> None:
    if account.role != "merchant" or "experience_score" not in fields:
        return
    now = await clock.now(session)
    items = list(await session.scalars(select(PoolItem).where(PoolItem.shop_id == account.id)))
    if not items:
        return
    products = {p.id: p for p in await session.scalars(
        select(Product).where(Product.id.in_({i.product_id for i in items})))}
    for item in items:
        qualifies = _qualifies(products[item.product_id], account)
        if qualifies != item.qualifies or (item.listed and not qualifies):
            item.qualifies = qualifies
            if not qualifies:
                item.listed = False
            item.updated_at = now
    await session.flush()


async def pool_items_out(session: AsyncSession, items: list[PoolItem]) -> list[PoolItemOut]:
    if not items:
        return []
    products = {p.id: p for p in await session.scalars(
        select(Product).where(Product.id.in_({i.product_id for i in items})))}
    shops = {a.id: a for a in await session.scalars(
        select(Account).where(Account.id.in_({i.shop_id for i in items})))}
    return [PoolItemOut(item_id=i.id, product=ProductOut.model_validate(products[i.product_id]),
                        shop=_shop_card(shops[i.shop_id]), qualifies=i.qualifies, listed=i.listed)
            for i in items]


async def list_pool(session: AsyncSession, actor: Actor, *, listed: bool | None, limit: int, cursor: str | None):
    query = select(PoolItem).where(PoolItem.agency_id == actor.id)
    if listed is not None:
        query = query.where(PoolItem.listed.is_(listed))
    rows, next_cursor = await keyset_page(session, query, PoolItem.id, limit=limit, cursor=cursor)
    return await pool_items_out(session, rows), next_cursor


async def set_listed(session: AsyncSession, actor: Actor, item_id: str, listed: bool) -> PoolItemOut:
    item = await session.scalar(select(PoolItem).where(PoolItem.id == item_id).with_for_update())
    if item is None or item.agency_id != actor.id:
        raise NotFound("no such pool item")
    if listed and not item.qualifies:
        raise Conflict("this product does not qualify for the pool (on sale, a brand, the shop's experience "
                       "score)", code="not_qualified")
    if item.listed != listed:
        item.listed = listed
        item.updated_at = await clock.now(session)
        await session.flush()
    return (await pool_items_out(session, [item]))[0]


# -- check-in codes --------------------------------------------------------------------------
async def check_in_code(session: AsyncSession, actor: Actor, base_id: str) -> CheckInCodeOut:
    base = await _owned_base(session, actor, base_id)
    settings = get_settings()
    now = await clock.now(session)
    expires_at = (now + timedelta(seconds=settings.checkin_code_ttl_seconds)).replace(microsecond=0)
    # Business time (the test clock) in the claims; verified against business time on scan.
    token = jwt.encode({"aud": TOKEN_AUDIENCE, "base": base.id, "iat": int(now.timestamp()),
                        "exp": int(expires_at.timestamp())}, settings.secret_key, algorithm="HS256")
    url = f"{settings.public_base_url.rstrip('/')}/check-in?token={quote(token)}"
    return CheckInCodeOut(token=token, url=url, expires_at=expires_at)


def qr_svg(url: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, border=4)
    return buffer.getvalue()


async def _base_of_token(session: AsyncSession, token: str) -> LiveBase:
    try:
        claims = jwt.decode(token, get_settings().secret_key, algorithms=["HS256"], audience=TOKEN_AUDIENCE,
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                     "require": ["aud", "base", "exp"]})
    except jwt.PyJWTError:
        raise ValidationFailed("this is not a check-in code of this platform", loc=["body", "token"],
                               code="invalid_check_in_code") from None
    now = await clock.now(session)
    if not isinstance(claims.get("exp"), int) or now.timestamp() >= claims["exp"]:
        raise ValidationFailed("this check-in code has expired: scan the code at the base again",
                               loc=["body", "token"], code="check_in_code_expired")
    base = await session.get(LiveBase, str(claims["base"]))
    if base is None:
        raise ValidationFailed("this check-in code's base no longer exists", loc=["body", "token"],
                               code="invalid_check_in_code")
    return base


# -- check-ins -------------------------------------------------------------------------------
async def evaluate(session: AsyncSession, creator: Account, base: LiveBase, now: datetime) -> list[str]:
    """The three check-in rules (达人签到规则); returns the failing reason codes."""
    reasons: list[str] = []
    strong_agency = await session.scalar(
        select(CreatorBinding.agency_id).join(Account, Account.id == CreatorBinding.agency_id)
        .where(CreatorBinding.creator_id == creator.id, CreatorBinding.state == "active",
               Account.head_annual.is_(True)).limit(1))
    if strong_agency is not None and strong_agency != base.agency_id:
        reasons.append(HEAD_AGENCY_OTHER_BASE)
    bases = set(await session.scalars(select(Cooperation.base_id).where(
        Cooperation.creator_id == creator.id, Cooperation.state == "active", Cooperation.ends_at > now)))
    if strong_agency is None and base.id not in bases and (creator.level or 0) > MAX_LEVEL_FOR_NEW_COOPERATION:
        reasons.append(LEVEL_TOO_HIGH)
    if bases - {base.id}:
        reasons.append(COOPERATION_CONFLICT)
    return reasons


def check_in_out(row: CheckIn, actor: Actor, now: datetime) -> CheckInOut:
    return CheckInOut(id=row.id, base_id=row.base_id, agency_id=row.agency_id, creator_id=row.creator_id,
                      state=row.state, version=row.version, allowed_actions=CHECK_IN.allowed_actions(row, actor, now),
                      eligibility=Eligibility(eligible=row.eligible, reasons=list(row.reasons or [])),
                      created_at=row.created_at, expires_at=row.expires_at, checked_in_at=row.checked_in_at,
                      checked_out_at=row.checked_out_at, cooperation_id=row.cooperation_id)


def _sees(row: Any, actor: Actor) -> bool:
    return _is_operator(actor) or actor.id in (row.creator_id, row.agency_id)


async def open_check_in(session: AsyncSession, actor: Actor, body: CheckInCreate) -> CheckIn:
    base = await _base_of_token(session, body.token)
    await fire_due(session, machines=["cooperation", "check_in"])
    creator = await session.get(Account, actor.id, populate_existing=True)
    assert creator is not None
    now = await clock.now(session)
    present = await session.scalar(select(CheckIn.id).where(
        CheckIn.creator_id == actor.id, CheckIn.base_id == base.id, CheckIn.state == "checked_in"))
    if present is not None:
        raise Conflict("you are already checked in at this base", code="already_checked_in", check_in_id=present)
    reasons = await evaluate(session, creator, base, now)
    row = CheckIn(base_id=base.id, agency_id=base.agency_id, creator_id=actor.id, eligible=not reasons,
                  reasons=reasons, created_at=now, expires_at=now + timedelta(minutes=PENDING_CHECK_IN_MINUTES))
    await CHECK_IN.create(session, row, actor, now=now, state=None if not reasons else "rejected",
                          reason=None if not reasons else {"reasons": reasons}, event_data={"base_id": base.id})
    if not reasons:
        await schedule(session, "check_in", row.id, "expire", row.expires_at)
    return row


async def get_check_in(session: AsyncSession, actor: Actor, check_in_id: str) -> CheckIn:
    await fire_due(session, machines=["cooperation"])  # an ended cooperation checks its creator out
    await fire_due(session, entity_id=check_in_id)
    row = await session.get(CheckIn, check_in_id, populate_existing=True)
    if row is None or not _sees(row, actor):
        raise NotFound("no such check-in")
    return row


async def list_check_ins(session: AsyncSession, actor: Actor, *, state: str | None, base_id: str | None,
                         limit: int, cursor: str | None):
    await fire_due(session, machines=["cooperation", "check_in"])
    query = select(CheckIn)
    if actor.role == "agency":
        query = query.where(CheckIn.agency_id == actor.id)
    elif actor.role == "creator":
        query = query.where(CheckIn.creator_id == actor.id)
    elif not _is_operator(actor):
        query = query.where(False)
    if state:
        query = query.where(CheckIn.state == state)
    if base_id:
        query = query.where(CheckIn.base_id == base_id)
    return await keyset_page(session, query, CheckIn.id, limit=limit, cursor=cursor)


async def confirm_check_in(session: AsyncSession, actor: Actor, check_in_id: str) -> CheckIn:
    peek = await session.get(CheckIn, check_in_id)
    if peek is None or not _sees(peek, actor):
        raise NotFound("no such check-in")
    # Lock the creator first: two confirms of one creator at two bases are decided one at a time.
    creator = await _lock_account(session, peek.creator_id)
    assert creator is not None
    await fire_due(session, entity_id=check_in_id)
    await fire_due(session, machines=["cooperation"])
    row = await CHECK_IN.load_locked(session, check_in_id)
    now = await clock.now(session)
    base = await session.get(LiveBase, row.base_id)
    assert base is not None
    reasons = await evaluate(session, creator, base, now) if row.state == "pending_confirmation" else []
    await CHECK_IN.fire(session, row, "confirm", actor, now=now, extra={"eligible": not reasons},
                        reason={"reasons": reasons} if reasons else None)
    row.eligible, row.reasons = not reasons, reasons
    if row.state == "checked_in":
        row.checked_in_at = now
        cooperation = await session.scalar(select(Cooperation).where(
            Cooperation.creator_id == row.creator_id, Cooperation.base_id == row.base_id,
            Cooperation.state == "active", Cooperation.ends_at > now))
        if cooperation is None:
            cooperation = Cooperation(base_id=row.base_id, agency_id=row.agency_id, creator_id=row.creator_id,
                                      started_at=now, ends_at=now + timedelta(days=get_settings().cooperation_days))
            await COOPERATION.create(session, cooperation, actor, now=now, event_data={"check_in_id": row.id})
            await schedule(session, "cooperation", cooperation.id, "end", cooperation.ends_at)
        row.cooperation_id = cooperation.id
        await schedule(session, "check_in", row.id, "check-out", clock.next_local_midnight(now))
    await session.flush()
    return row


async def check_out(session: AsyncSession, actor: Actor, check_in_id: str, reason: str | None) -> CheckIn:
    await fire_due(session, entity_id=check_in_id)
    peek = await session.get(CheckIn, check_in_id)
    if peek is None or not _sees(peek, actor):
        raise NotFound("no such check-in")
    row = await CHECK_IN.load_locked(session, check_in_id)
    now = await clock.now(session)
    await CHECK_IN.fire(session, row, "check-out", actor, now=now, reason=reason)
    row.checked_out_at = now
    await session.flush()
    return row


@on_timer("check_in", "check-out")
async def _check_out_at_midnight(session: AsyncSession, row: Any, now: datetime) -> None:
    await CHECK_IN.fire(session, row, "check-out", SYSTEM, now=now, reason="end of the calendar day")
    row.checked_out_at = now
    await session.flush()


# -- cooperations ----------------------------------------------------------------------------
def cooperation_out(row: Cooperation, actor: Actor, now: datetime) -> CooperationOut:
    return CooperationOut(id=row.id, base_id=row.base_id, agency_id=row.agency_id, creator_id=row.creator_id,
                          state=row.state, version=row.version,
                          allowed_actions=COOPERATION.allowed_actions(row, actor, now), started_at=row.started_at,
                          ends_at=row.ends_at, ended_at=row.ended_at)


async def _check_out_present(session: AsyncSession, cooperation: Cooperation, now: datetime) -> None:
    """A creator whose cooperation ends is no longer present at the base."""
    ids = list(await session.scalars(select(CheckIn.id).where(
        CheckIn.cooperation_id == cooperation.id, CheckIn.state == "checked_in")))
    for check_in_id in ids:
        row = await CHECK_IN.load_locked(session, check_in_id)
        await CHECK_IN.fire(session, row, "check-out", SYSTEM, now=now, reason=f"cooperation {cooperation.state}")
        row.checked_out_at = now


async def get_cooperation(session: AsyncSession, actor: Actor, cooperation_id: str) -> Cooperation:
    await fire_due(session, entity_id=cooperation_id)
    row = await session.get(Cooperation, cooperation_id, populate_existing=True)
    if row is None or not _sees(row, actor):
        raise NotFound("no such cooperation")
    return row


async def list_cooperations(session: AsyncSession, actor: Actor, *, state: str | None, limit: int,
                            cursor: str | None):
    await fire_due(session, machines=["cooperation"])
    query = select(Cooperation)
    if actor.role == "agency":
        query = query.where(Cooperation.agency_id == actor.id)
    elif actor.role == "creator":
        query = query.where(Cooperation.creator_id == actor.id)
    elif not _is_operator(actor):
        query = query.where(False)
    if state:
        query = query.where(Cooperation.state == state)
    return await keyset_page(session, query, Cooperation.id, limit=limit, cursor=cursor)


async def terminate_cooperation(session: AsyncSession, actor: Actor, cooperation_id: str,
                                reason: str | None) -> Cooperation:
    await fire_due(session, entity_id=cooperation_id)
    peek = await session.get(Cooperation, cooperation_id)
    if peek is None or not _sees(peek, actor):
        raise NotFound("no such cooperation")
    row = await COOPERATION.load_locked(session, cooperation_id)
    now = await clock.now(session)
    await COOPERATION.fire(session, row, "terminate", actor, now=now, reason=reason)
    row.ended_at = now
    await _check_out_present(session, row, now)
    await session.flush()
    return row


@on_timer("cooperation", "end")
async def _end_cooperation(session: AsyncSession, row: Any, now: datetime) -> None:
    await COOPERATION.fire(session, row, "end", SYSTEM, now=now)
    row.ended_at = row.ends_at
    await _check_out_present(session, row, now)
    await session.flush()


# -- statistics ------------------------------------------------------------------------------
async def stats(session: AsyncSession, actor: Actor, base_id: str, start: datetime | None,
                end: datetime | None) -> StatsOut:
    base = await _owned_base(session, actor, base_id)
    now = await clock.now(session)
    end = end or now
    start = start or end - timedelta(days=30)
    if start >= end:
        raise ValidationFailed("'from' must be before 'to'", loc=["query", "from"])
    if end - start > timedelta(days=366):
        raise ValidationFailed("at most 366 days at a time", loc=["query", "to"])
    o = SalesOrder
    in_pool = exists().where(
        ShopBinding.agency_id == base.agency_id, ShopBinding.shop_id == o.shop_id,
        ShopBinding.began_at.is_not(None), ShopBinding.began_at <= o.paid_at,
        or_(ShopBinding.ended_at.is_(None), o.paid_at < ShopBinding.ended_at))
    bound = exists().where(
        CreatorBinding.agency_id == base.agency_id, CreatorBinding.creator_id == o.creator_id,
        CreatorBinding.began_at.is_not(None), CreatorBinding.began_at <= o.paid_at,
        or_(CreatorBinding.ended_at.is_(None), o.paid_at < CreatorBinding.ended_at))
    cooperating = exists().where(
        Cooperation.base_id == base.id, Cooperation.creator_id == o.creator_id,
        Cooperation.started_at <= o.paid_at, o.paid_at < Cooperation.ends_at,
        or_(Cooperation.ended_at.is_(None), o.paid_at < Cooperation.ended_at))
    counted = and_(o.paid_at >= start, o.paid_at < end, o.creator_id.is_not(None), in_pool, or_(bound, cooperating))
    gmv = func.coalesce(func.sum(case((o.status == "paid", o.amount_fen), else_=0)), 0)
    orders = func.coalesce(func.sum(case((o.status == "paid", 1), else_=0)), 0)
    total = (await session.execute(select(gmv, orders).where(counted))).one()
    by_creator = (await session.execute(
        select(o.creator_id, Account.nickname, gmv.label("gmv"), orders.label("n"))
        .join(Account, Account.id == o.creator_id).where(counted)
        .group_by(o.creator_id, Account.nickname).order_by(gmv.desc(), o.creator_id).limit(100))).all()
    by_product = (await session.execute(
        select(o.product_id, Product.title, gmv.label("gmv"), orders.label("n"))
        .join(Product, Product.id == o.product_id).where(counted)
        .group_by(o.product_id, Product.title).order_by(gmv.desc(), o.product_id).limit(100))).all()
    check_ins = await session.scalar(select(func.count()).select_from(CheckIn).where(
        CheckIn.base_id == base.id, CheckIn.checked_in_at.is_not(None), CheckIn.checked_in_at >= start,
        CheckIn.checked_in_at < end))
    present = exists().where(
        CheckIn.base_id == base.id, CheckIn.creator_id == LiveSession.host_id,
        CheckIn.checked_in_at.is_not(None), CheckIn.checked_in_at <= LiveSession.started_at,
        or_(CheckIn.checked_out_at.is_(None), LiveSession.started_at < CheckIn.checked_out_at))
    sessions = await session.scalar(select(func.count()).select_from(LiveSession).where(
        LiveSession.started_at >= start, LiveSession.started_at < end, present))
    return StatsOut(base_id=base.id, from_=start, to=end, gmv_fen=int(total[0]), orders=int(total[1]),
                    check_ins=int(check_ins or 0), live_sessions=int(sessions or 0),
                    by_creator=[CreatorStats(creator_id=r[0], nickname=r[1], gmv_fen=int(r[2]), orders=int(r[3]))
                                for r in by_creator],
                    by_product=[ProductStats(product_id=r[0], title=r[1], gmv_fen=int(r[2]), orders=int(r[3]))
                                for r in by_product])


WORKFLOWS_OF_MODULE: tuple[Workflow, ...] = (CREATOR_BINDING, SHOP_BINDING, CHECK_IN, COOPERATION)


# -- demo data -------------------------------------------------------------------------------
async def _demo_step(session: AsyncSession, accounts: dict[str, Account]) -> list[str]:
    agency, merchant = accounts.get("agency"), accounts.get("merchant")
    if agency is None or merchant is None:
        return []
    if await session.scalar(select(LiveBase.id).where(LiveBase.agency_id == agency.id)):
        return []
    agency_actor, merchant_actor = Actor(agency.id, "agency"), Actor(merchant.id, "merchant")
    await session.flush()
    base = await create_base(session, agency_actor,
                             LiveBaseCreate(name="星光直播基地", address="杭州市余杭区直播产业园 1 号"))
    binding = await create_shop_binding(session, agency_actor, ShopBindingCreate(shop_id=merchant.id))
    await fire_shop_binding(session, merchant_actor, binding.id, "accept", None)
    first = await session.scalar(select(PoolItem).where(PoolItem.agency_id == agency.id,
                                                        PoolItem.qualifies.is_(True)).order_by(PoolItem.id))
    if first is not None:
        first.listed = True
    await session.flush()
    return [f"  live base {base.id} of 'agency' with the merchant's shop bound and one pool product listed"]


def _register_demo() -> None:
    from app.demo import DEMO_STEPS

    if _demo_step not in DEMO_STEPS:
        DEMO_STEPS.append(_demo_step)


_register_demo()
