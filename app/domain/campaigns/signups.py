"""Rules of campaign signups (达人报名): a pre-selected creator signs up with 1–5 shops, every
listed shop decides for itself, then the platform; traffic support, products, stock
confirmations.

A transition is one conditional UPDATE of the signup's row with its history, event and the
rows that go with it (`CAMPAIGN_SIGNUP.fire`). The per-shop steps also write the deciding
shop's row; the signup's row is locked (`FOR UPDATE`) while a step reads the other shops'
decisions, so two shops deciding at once run one after the other and exactly one of them moves
the signup on."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.db.base import id_for
from app.db.bulk import Part, insert_together
from app.db.models.campaigns import CampaignSignup, CampaignSignupItem
from app.db.models.platform import Event, EventRecipient
from app.db.repositories import campaigns as repo
from app.db.repositories.campaigns import SignupHead, SignupItem, SignupRecord, SignupShop, SignupWithParts
from app.db.repositories.platform import TransitionRow
from app.domain.campaigns.schemas import (
    CampaignContactOut,
    CampaignGrantTrafficIn,
    CampaignSignupCreate,
    CampaignSignupItemOut,
    CampaignSignupOut,
    CampaignSignupShopOut,
    CampaignSignupState,
    CampaignSubmitProductsIn,
)
from app.domain.campaigns.service import visible_campaign
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.state import clock
from app.state.campaign_signup import CAMPAIGN_SIGNUP, expiry_due
from app.state.core import Actor, Ctx, history
from app.state.timers import fire_due, new_timer

_EVENTS, _RECIPIENTS = Event.__table__, EventRecipient.__table__
_RECORD_FIELDS = tuple(f.name for f in fields(SignupRecord))


# =========================================================================== representation
def signup_out(row: SignupWithParts, actor: Actor, now: datetime) -> CampaignSignupOut:
    """A merchant sees every listed shop's decision, but only its own shop's planned products."""
    with_products = {i.shop_id for i in row.items}
    items = [i for i in row.items if actor.role != "merchant" or i.shop_id == actor.id]
    return CampaignSignupOut(
        id=row.id,
        campaign_id=row.campaign_id,
        creator_id=row.creator_id,
        creator_nickname=row.creator_nickname,
        planned_live_at=row.planned_live_at,
        contact=CampaignContactOut(phone=row.contact_phone, wechat=row.contact_wechat),
        note=row.note,
        shops=[
            CampaignSignupShopOut(
                shop_id=s.shop_id,
                shop_name=s.shop_name,
                decision=s.decision,
                reason=s.decision_reason,
                decided_at=s.decided_at,
                has_products=s.shop_id in with_products,
                stock_confirmed=s.stock_confirmed_at is not None,
                stock_confirmed_at=s.stock_confirmed_at,
            )
            for s in row.shops
        ],
        items=[
            CampaignSignupItemOut(product_id=i.product_id, shop_id=i.shop_id, title=i.title, planned_quantity=i.planned_quantity)
            for i in items
        ],
        traffic_units=row.traffic_units,
        traffic_note=row.traffic_note,
        live_session_id=row.live_session_id,
        state=row.state,
        version=row.version,
        allowed_actions=CAMPAIGN_SIGNUP.allowed_actions(row, actor, now),
        created_at=row.created_at,
    )


# =========================================================================== loading
async def load_signup(
    session: AsyncSession, actor: Actor, signup_id: str, *, lock: bool = False
) -> tuple[SignupWithParts, datetime]:
    """The signup with its parts as of now (an overdue `expire` fired first: the timer query
    only runs when the row says `product_deadline` has passed), and business time; 404 to
    anyone not a party to it. `lock`: the signup's row `FOR UPDATE` (a per-shop step)."""
    row, offset = await repo.signup(session, signup_id, lock=lock, with_clock=clock.carries_offset())
    if row is None or not repo.signup_visible_to(actor.role, actor.id, row):
        raise NotFound("no such signup")
    clock.remember(session, offset)
    now = await clock.now(session)
    if expiry_due(row, now):
        await fire_due(session, entity_id=signup_id)
        row, _ = await repo.signup(session, signup_id, lock=lock)
        assert row is not None
    return row, now


def _destination(
    row: SignupWithParts, action: str, actor: Actor, now: datetime, extra: dict[str, object] | None = None
) -> str | None:
    """Where `action` would take the signup now, by the machine's own rules (the one whose
    guard and `when` hold): what a message announcing the move says, so that it rides in the
    transition's statement. None when it is not allowed (the transition then refuses it)."""
    ctx = Ctx(row, actor, now, dict(extra or {}))
    for r in CAMPAIGN_SIGNUP.rules_for(action):
        if row.state in r.source and r.permits(ctx) and (r.when is None or r.when(ctx)):
            return r.dest or row.state
    return None


def _deadline_passed(row: SignupWithParts, action: str, now: datetime) -> None:
    sources = {s for r in CAMPAIGN_SIGNUP.rules_for(action) for s in r.source}
    if row.state in sources and now >= row.product_deadline:
        raise Conflict("the product deadline has passed", code="deadline_passed", deadline=row.product_deadline.isoformat())


# =========================================================================== a new signup
def _also_concerning(parts: list[Part], account_ids: list[str]) -> list[Part]:
    """The created event concerns the listed shops too. `creation` takes the machine's parties
    from the new row alone, which does not list its shops yet: they are added to its recipients."""
    event_id = next(rows[0]["id"] for table, rows in parts if table is _EVENTS)
    known = {r["account_id"] for table, rows in parts if table is _RECIPIENTS for r in rows}
    more = [{"event_id": event_id, "account_id": a} for a in sorted(set(account_ids) - known)]
    return [(table, [*rows, *more] if table is _RECIPIENTS else rows) for table, rows in parts]


async def create_signup(session: AsyncSession, actor: Actor, campaign_id: str, body: CampaignSignupCreate) -> CampaignSignupOut:
    campaign, now = await visible_campaign(session, actor, campaign_id)
    if not campaign.eligible:
        raise Forbidden("you are not pre-selected for this campaign; ask the platform", code="not_eligible")
    if campaign.state != "published":
        raise Conflict("the campaign is closed", code="campaign_closed")
    if now >= campaign.signup_deadline:
        raise Conflict("the signup deadline has passed", code="deadline_passed", deadline=campaign.signup_deadline.isoformat())
    if len(set(body.shop_ids)) != len(body.shop_ids):
        raise ValidationFailed("a shop is listed twice", loc=["body", "shop_ids"])
    parties = await repo.signup_parties(session, [*body.shop_ids, actor.id])
    for index, shop_id in enumerate(body.shop_ids):
        party = parties.get(shop_id)
        if party is None or party.role != "merchant":
            raise ValidationFailed(f"'{shop_id}' is not a merchant", loc=["body", "shop_ids", index])
    if not campaign.live_from <= body.planned_live_at < campaign.live_to:
        raise ValidationFailed("planned_live_at must be within the campaign's live window", loc=["body", "planned_live_at"])
    taken = await repo.slot_holder(session, campaign.id, actor.id, body.planned_live_at)
    if taken:
        raise Conflict("you already signed up for this campaign at this time", code="duplicate_signup", signup_id=taken)
    creator = parties[actor.id]
    contact = body.contact
    row, parts = CAMPAIGN_SIGNUP.creation(
        {
            "id": id_for(CampaignSignup),
            "campaign_id": campaign.id,
            "creator_id": actor.id,
            "planned_live_at": body.planned_live_at,
            "contact_phone": contact.phone if contact and "phone" in contact.model_fields_set else creator.contact_phone,
            "contact_wechat": contact.wechat if contact and "wechat" in contact.model_fields_set else creator.contact_wechat,
            "note": body.note,
            "traffic_units": None,
            "traffic_note": None,
            "live_session_id": None,
            "created_at": now,
        },
        actor,
        now,
    )
    shops = tuple(
        SignupShop(
            shop_id=s,
            shop_name=parties[s].shop_name,
            position=i,
            decision="pending",
            decision_reason=None,
            decided_at=None,
            stock_confirmed_at=None,
        )
        for i, s in enumerate(body.shop_ids)
    )
    head = SignupHead(
        **{name: getattr(row, name) for name in _RECORD_FIELDS},
        product_deadline=campaign.product_deadline,
        creator_nickname=creator.nickname,
    )
    signup = repo.with_parts(head, shops, ())
    try:  # one statement on PostgreSQL: the signup, its shops, history, event, timer and messages
        await insert_together(
            session,
            *_also_concerning(parts, CAMPAIGN_SIGNUP.parties(signup)),
            (
                repo.signup_shops,
                [
                    {
                        "signup_id": row.id,
                        "shop_id": s.shop_id,
                        "position": s.position,
                        "decision": "pending",
                        "decision_reason": None,
                        "decided_at": None,
                        "stock_confirmed_at": None,
                    }
                    for s in shops
                ],
            ),
            new_timer("campaign_signup", row.id, "expire", campaign.product_deadline),
            *(
                part
                for shop_id in body.shop_ids
                for part in message_rows(
                    shop_id,
                    "campaign_signup.created",
                    "达人报名待确认",
                    f"A creator listed your shop in a signup to '{campaign.title}'.",
                    {"signup_id": row.id, "campaign_id": campaign.id},
                    now,
                )
            ),
        )
    except IntegrityError:  # a concurrent signup took the slot (the partial unique index)
        raise Conflict("you already signed up for this campaign at this time", code="duplicate_signup") from None
    return signup_out(signup, actor, now)


# =========================================================================== reading
async def get_signup(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignupOut:
    row, now = await load_signup(session, actor, signup_id)
    return signup_out(row, actor, now)


async def signup_history(session: AsyncSession, actor: Actor, signup_id: str) -> list[TransitionRow]:
    await load_signup(session, actor, signup_id)
    return await history(session, "campaign_signup", signup_id)


async def list_signups(
    session: AsyncSession, actor: Actor, campaign_id: str, *, state: CampaignSignupState | None, limit: int, cursor: str | None
) -> PageOut[CampaignSignupOut]:
    campaign, now = await visible_campaign(session, actor, campaign_id)
    await fire_due(session, machines=["campaign_signup"])
    page = await repo.signups_page(
        session, campaign.id, actor.role, actor.id, state=state.value if state else None, limit=limit, cursor=cursor
    )
    return PageOut[CampaignSignupOut](items=[signup_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


# =========================================================================== actions
def _with_shop(row: SignupWithParts, shop_id: str, **changes: object) -> SignupWithParts:
    return replace(row, shops=tuple(replace(s, **changes) if s.shop_id == shop_id else s for s in row.shops))


async def merchant_decide(
    session: AsyncSession, actor: Actor, signup_id: str, approve: bool, reason: str | None = None
) -> CampaignSignupOut:
    action = "merchant-approve" if approve else "merchant-reject"
    row, now = await load_signup(session, actor, signup_id, lock=True)
    if actor.role == "merchant":
        _deadline_passed(row, action, now)
    extra = {"shop_id": actor.id}
    to = _destination(row, action, actor, now, extra)
    also = (
        message_rows(
            row.creator_id,
            f"campaign_signup.{to}",
            "报名商家确认结果",
            f"Every listed shop decided on your signup: {to}.",
            {"signup_id": row.id},
            now,
        )
        if to not in (None, row.state)
        else []
    )
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, action, actor, now=now, reason=reason, extra=extra, event_data={"shop_id": actor.id}, also=also
    )
    decision = "approved" if approve else "rejected"
    await repo.record_decision(session, row.id, actor.id, decision, reason, now)
    moved = _with_shop(moved, actor.id, decision=decision, decision_reason=reason, decided_at=now)
    return signup_out(moved, actor, now)


async def simple_action(
    session: AsyncSession, actor: Actor, signup_id: str, action: str, reason: str | None = None
) -> CampaignSignupOut:
    """platform-approve, platform-reject, platform-confirm-stock, withdraw."""
    row, now = await load_signup(session, actor, signup_id, lock=True)
    to = _destination(row, action, actor, now)
    also = (
        message_rows(
            row.creator_id, f"campaign_signup.{to}", "活动报名状态更新", f"Your signup is now {to}.", {"signup_id": row.id}, now
        )
        if to is not None and actor.id != row.creator_id
        else []
    )
    row = await CAMPAIGN_SIGNUP.fire(session, row, action, actor, now=now, reason=reason, also=also)
    return signup_out(row, actor, now)


async def grant_traffic(session: AsyncSession, actor: Actor, signup_id: str, body: CampaignGrantTrafficIn) -> CampaignSignupOut:
    row, now = await load_signup(session, actor, signup_id, lock=True)
    row = await CAMPAIGN_SIGNUP.fire(
        session,
        row,
        "grant-traffic",
        actor,
        now=now,
        reason=body.note,
        event_data={"traffic_units": body.traffic_units},
        changes={"traffic_units": body.traffic_units, "traffic_note": body.note},
        also=message_rows(
            row.creator_id,
            "campaign_signup.traffic_granted",
            "流量扶持已发放",
            f"{body.traffic_units} traffic units granted; submit your products.",
            {"signup_id": row.id},
            now,
        ),
    )
    return signup_out(row, actor, now)


async def _planned_items(session: AsyncSession, row: SignupWithParts, body: CampaignSubmitProductsIn) -> tuple[SignupItem, ...]:
    """The submitted products, checked: each on sale, of a shop that approved, listed once."""
    approved = {s.shop_id for s in row.shops if s.decision == "approved"}
    products = await repo.plannable_products(session, [i.product_id for i in body.items])
    seen: set[str] = set()
    for index, item in enumerate(body.items):
        product = products.get(item.product_id)
        loc = ["body", "items", index, "product_id"]
        if product is None or product.shop_id not in approved:
            raise ValidationFailed("not a product of a shop that approved this signup", loc=loc)
        if product.status != "on_sale":
            raise ValidationFailed("this product is off sale", loc=loc)
        if item.product_id in seen:
            raise ValidationFailed("a product is listed twice", loc=loc)
        seen.add(item.product_id)
    return tuple(
        SignupItem(
            product_id=i.product_id,
            shop_id=products[i.product_id].shop_id,
            title=products[i.product_id].title,
            position=n,
            planned_quantity=i.planned_quantity,
        )
        for n, i in enumerate(body.items)
    )


async def submit_products(
    session: AsyncSession, actor: Actor, signup_id: str, body: CampaignSubmitProductsIn
) -> CampaignSignupOut:
    """提报商品: the list replaces the previous one and resets every shop's stock confirmation."""
    row, now = await load_signup(session, actor, signup_id, lock=True)
    if row.creator_id == actor.id:
        _deadline_passed(row, "submit-products", now)
    items: tuple[SignupItem, ...] = ()
    also: list[Part] = []
    # a refused transition (403, 409) answers before the products are looked at
    if CAMPAIGN_SIGNUP.can(row, "submit-products", actor, now):
        items = await _planned_items(session, row, body)
        await repo.clear_plan(session, row.id)
        also = [
            (
                repo.signup_items,
                [
                    {
                        "id": id_for(CampaignSignupItem),
                        "signup_id": row.id,
                        "product_id": i.product_id,
                        "shop_id": i.shop_id,
                        "position": i.position,
                        "planned_quantity": i.planned_quantity,
                    }
                    for i in items
                ],
            ),
            *(
                part
                for shop_id in sorted({i.shop_id for i in items})
                for part in message_rows(
                    shop_id,
                    "campaign_signup.products_submitted",
                    "达人已提报商品，请确认库存",
                    "A creator planned products of your shop; check and confirm the stock.",
                    {"signup_id": row.id},
                    now,
                )
            ),
        ]
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, "submit-products", actor, now=now, event_data={"revision": row.state == "products_submitted"}, also=also
    )
    moved = replace(moved, items=items, shops=tuple(replace(s, stock_confirmed_at=None) for s in moved.shops))
    return signup_out(moved, actor, now)


async def merchant_confirm_stock(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignupOut:
    row, now = await load_signup(session, actor, signup_id, lock=True)
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, "merchant-confirm-stock", actor, now=now, extra={"shop_id": actor.id}, event_data={"shop_id": actor.id}
    )
    await repo.confirm_stock(session, row.id, actor.id, now)
    return signup_out(_with_shop(moved, actor.id, stock_confirmed_at=now), actor, now)
