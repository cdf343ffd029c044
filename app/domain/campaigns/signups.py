"""Campaign signups (达人报名): a pre-selected creator signs up with 1–5 shops; representation,
loading, creation and reading. The transitions are `signup_actions.py`.

A transition is one conditional UPDATE of the signup's row with its history, event and the
rows that go with it (`CAMPAIGN_SIGNUP.fire`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import msg, term
from app.core.times import iso_z
from app.db.base import id_for, table_of
from app.db.bulk import Part, insert_together
from app.db.models.campaigns import CampaignSignup
from app.db.models.platform import Event, EventRecipient
from app.db.repositories import campaigns as repo
from app.db.repositories.campaigns import SignupHead, SignupRecord, SignupShop, SignupWithParts
from app.db.repositories.platform import TransitionRow
from app.domain.campaigns.schemas import (
    CampaignContactOut,
    CampaignSignupCreate,
    CampaignSignupItemOut,
    CampaignSignupOut,
    CampaignSignupShopOut,
    CampaignSignupState,
)
from app.domain.campaigns.service import visible_campaign
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.state import clock
from app.state.campaign_signup import CAMPAIGN_SIGNUP, expiry_due
from app.state.core import Actor, Ctx, history
from app.state.timers import fire_due, new_timer, page_as_of_now

_EVENTS, _RECIPIENTS = table_of(Event), table_of(EventRecipient)
_RECORD_FIELDS = tuple(f.name for f in fields(SignupRecord))


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
        if row.state in r.source and r.permits(ctx) and (r.when is None or r.when(ctx) is True):
            return r.dest or row.state
    return None


# =========================================================================== a new signup
def _also_concerning(parts: list[Part], account_ids: Iterable[str]) -> list[Part]:
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
        raise Conflict("the signup deadline has passed", code="deadline_passed", deadline=iso_z(campaign.signup_deadline))
    if len(set(body.shop_ids)) != len(body.shop_ids):
        raise ValidationFailed("a shop is listed twice", loc=["body", "shop_ids"])
    parties, taken = await repo.signup_parties_and_slot(
        session, [*body.shop_ids, actor.id], campaign.id, actor.id, body.planned_live_at
    )
    for index, shop_id in enumerate(body.shop_ids):
        party = parties.get(shop_id)
        if party is None or party.role != "merchant":
            raise ValidationFailed(
                msg("'{account_id}' is not a {role}", account_id=shop_id, role=term("merchant")), loc=["body", "shop_ids", index]
            )
    if not campaign.live_from <= body.planned_live_at < campaign.live_to:
        raise ValidationFailed("planned_live_at must be within the campaign's live window", loc=["body", "planned_live_at"])
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
    page = await page_as_of_now(
        session,
        "campaign_signup",
        lambda: repo.signups_page(session, campaign.id, actor.role, actor.id, state=state, limit=limit, cursor=cursor),
    )
    return PageOut[CampaignSignupOut](items=[signup_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)
