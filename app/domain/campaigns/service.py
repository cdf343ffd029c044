"""Rules of the campaigns module (直播间奖励): campaigns and their pre-selected creators, finding
creators, creators' cards and merchants' cooperation intents. Signups are in `signups.py`, the
stock plan and its downloads in `exports.py`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import msg, term
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.campaigns import Campaign, CampaignIntent
from app.db.repositories import accounts as accounts_repo
from app.db.repositories import campaigns as repo
from app.db.repositories import entities
from app.db.repositories.campaigns import CampaignRecord, CardRecord, SeenCampaign
from app.db.repositories.platform import TransitionRow
from app.domain.accounts import Contact
from app.domain.campaigns.schemas import (
    CampaignCardIn,
    CampaignCardOut,
    CampaignContactOut,
    CampaignCreate,
    CampaignCreatorOut,
    CampaignEligibleCreatorsIn,
    CampaignEligibleCreatorsOut,
    CampaignIntentIn,
    CampaignIntentOut,
    CampaignOut,
    CampaignState,
)
from app.domain.notifications import message_rows
from app.domain.schemas import PageOut
from app.state import clock
from app.state.campaign import CAMPAIGN, close_due
from app.state.core import Actor, history
from app.state.timers import fire_due, new_timer, page_as_of_now

GMV_WINDOW = timedelta(days=30)


# =========================================================================== campaigns
def campaign_out(row: CampaignRecord, actor: Actor, now: datetime) -> CampaignOut:
    can = None
    if actor.role == "creator":
        eligible = isinstance(row, SeenCampaign) and row.eligible
        can = eligible and row.state == "published" and now < row.signup_deadline
    return CampaignOut(
        id=row.id,
        title=row.title,
        description=row.description,
        signup_deadline=row.signup_deadline,
        product_deadline=row.product_deadline,
        live_from=row.live_from,
        live_to=row.live_to,
        state=row.state,
        version=row.version,
        allowed_actions=CAMPAIGN.allowed_actions(row, actor, now),
        can_sign_up=can,
        created_at=row.created_at,
    )


async def visible_campaign(session: AsyncSession, actor: Actor, campaign_id: str) -> tuple[SeenCampaign, datetime]:
    """The campaign as of now (an overdue `close` fired first, as the sweeper would have: the
    timer query only runs when the row says `live_to` has passed), with business time, in one
    statement; 404 when the caller may not see it. For a creator, `eligible` says whether it is
    pre-selected."""
    creator = actor.id if actor.role == "creator" else ""
    row, offset = await repo.campaign(session, campaign_id, creator_id=creator, with_clock=clock.carries_offset())
    if row is None or not repo.may_see_campaign(actor.role, row.state):
        raise NotFound("no such campaign")
    clock.remember(session, offset)
    now = await clock.now(session)
    if close_due(row, now):
        await fire_due(session, entity_id=campaign_id)
        row, _ = await repo.campaign(session, campaign_id, creator_id=creator)
        assert row is not None
    return row, now


async def create_campaign(session: AsyncSession, actor: Actor, body: CampaignCreate) -> CampaignOut:
    now = await clock.now(session)
    if not body.signup_deadline <= body.product_deadline:
        raise ValidationFailed("signup_deadline must not be after product_deadline", loc=["body", "product_deadline"])
    if not body.product_deadline <= body.live_from:
        raise ValidationFailed("product_deadline must not be after live_from", loc=["body", "live_from"])
    if not body.live_from < body.live_to:
        raise ValidationFailed("live_to must be after live_from", loc=["body", "live_to"])
    if body.live_to <= now:
        raise ValidationFailed("the live window is already over", loc=["body", "live_to"])
    row, parts = CAMPAIGN.creation(
        {
            "id": id_for(Campaign),
            "title": body.title,
            "description": body.description,
            "signup_deadline": body.signup_deadline,
            "product_deadline": body.product_deadline,
            "live_from": body.live_from,
            "live_to": body.live_to,
            "created_by": actor.id,
            "created_at": now,
        },
        actor,
        now,
    )
    await insert_together(session, *parts, new_timer("campaign", row.id, "close", row.live_to))
    return campaign_out(row, actor, now)


async def list_campaigns(
    session: AsyncSession, actor: Actor, *, state: CampaignState | None, limit: int, cursor: str | None
) -> PageOut[CampaignOut]:
    page = await page_as_of_now(
        session, "campaign", lambda: repo.campaigns_page(session, actor.role, actor.id, state=state, limit=limit, cursor=cursor)
    )
    now = await clock.now(session)
    return PageOut[CampaignOut](items=[campaign_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def get_campaign(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignOut:
    row, now = await visible_campaign(session, actor, campaign_id)
    return campaign_out(row, actor, now)


async def campaign_action(
    session: AsyncSession, actor: Actor, campaign_id: str, action: str, reason: str | None = None
) -> CampaignOut:
    """`publish` or `close`: one conditional UPDATE (a concurrent move of the campaign is a 409)."""
    row, now = await visible_campaign(session, actor, campaign_id)
    row = await CAMPAIGN.fire(session, row, action, actor, now=now, reason=reason)
    return campaign_out(row, actor, now)


async def campaign_history(session: AsyncSession, actor: Actor, campaign_id: str) -> list[TransitionRow]:
    row, _ = await visible_campaign(session, actor, campaign_id)
    return await history(session, "campaign", row.id)


async def set_eligible(
    session: AsyncSession, actor: Actor, campaign_id: str, body: CampaignEligibleCreatorsIn
) -> CampaignEligibleCreatorsOut:
    # the campaign's row is locked: two replacements of its list run one after the other
    campaign = await entities.entity(session, CAMPAIGN.table, CampaignRecord, campaign_id, lock=True)
    if campaign is None or not repo.may_see_campaign(actor.role, campaign.state):
        raise NotFound("no such campaign")
    wanted = list(dict.fromkeys(body.creator_ids))
    creators = await accounts_repo.ids_of_role(session, wanted, "creator")
    for index, creator_id in enumerate(body.creator_ids):
        if creator_id not in creators:
            raise ValidationFailed(
                msg("'{account_id}' is not a {role}", account_id=creator_id, role=term("creator")),
                loc=["body", "creator_ids", index],
            )
    await repo.replace_eligible(session, campaign_id, wanted)
    return CampaignEligibleCreatorsOut(campaign_id=campaign_id, creator_ids=sorted(wanted))


async def get_eligible(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignEligibleCreatorsOut:
    await visible_campaign(session, actor, campaign_id)
    return CampaignEligibleCreatorsOut(campaign_id=campaign_id, creator_ids=await repo.eligible_creator_ids(session, campaign_id))


# =========================================================================== finding creators, cards
def _card_out(card: CardRecord, *, with_contact: bool = True) -> CampaignCardOut:
    contact = CampaignContactOut(phone=card.contact_phone, wechat=card.contact_wechat) if with_contact else CampaignContactOut()
    return CampaignCardOut(
        campaign_id=card.campaign_id,
        creator_id=card.creator_id,
        contact=contact,
        intended_merchants=list(card.intended_merchants or []),
        cooperation_note=card.cooperation_note,
        updated_at=card.updated_at,
    )


async def list_creators(
    session: AsyncSession, actor: Actor, campaign_id: str, *, q: str | None, level_min: int | None, limit: int, cursor: str | None
) -> PageOut[CampaignCreatorOut]:
    """寻找达人. A card's contact is published to merchants (and operators), not to other
    creators: a creator sees its own card's contact only."""
    campaign, now = await visible_campaign(session, actor, campaign_id)
    page = await repo.eligible_creators_page(session, campaign.id, q=q, level_min=level_min, limit=limit, cursor=cursor)
    ids = [r.id for r in page.items]
    gmv = await repo.gmv_between(session, ids, now - GMV_WINDOW, now)
    cards = await repo.cards_of(session, campaign.id, ids)

    def card(creator_id: str) -> CampaignCardOut | None:
        found = cards.get(creator_id)
        if found is None:
            return None
        return _card_out(found, with_contact=actor.role != "creator" or creator_id == actor.id)

    items = [
        CampaignCreatorOut(
            creator_id=r.id,
            nickname=r.nickname,
            level=r.level,
            followers=r.followers,
            gmv_30d_fen=gmv.get(r.id, 0),
            card=card(r.id),
        )
        for r in page.items
    ]
    return PageOut[CampaignCreatorOut](items=items, next_cursor=page.next_cursor)


async def get_card(session: AsyncSession, actor: Actor, campaign_id: str) -> CampaignCardOut:
    """The caller's own card of the campaign (what `PUT …/my-card` accepts back); 404 before it
    published one."""
    campaign, _ = await visible_campaign(session, actor, campaign_id)
    card = (await repo.cards_of(session, campaign.id, [actor.id])).get(actor.id)
    if card is None:
        raise NotFound("you have not published a card for this campaign (PUT it)")
    return _card_out(card)


async def put_card(session: AsyncSession, actor: Actor, campaign_id: str, body: CampaignCardIn) -> CampaignCardOut:
    campaign, now = await visible_campaign(session, actor, campaign_id)
    if not campaign.eligible:
        raise Forbidden("you are not pre-selected for this campaign", code="not_eligible")
    contact = body.contact or Contact()
    card = await repo.put_card(
        session,
        {
            "campaign_id": campaign.id,
            "creator_id": actor.id,
            "contact_phone": contact.phone,
            "contact_wechat": contact.wechat,
            "intended_merchants": list(body.intended_merchants),
            "cooperation_note": body.cooperation_note,
            "updated_at": now,
        },
    )
    return _card_out(card)


# =========================================================================== intents
async def create_intent(session: AsyncSession, actor: Actor, campaign_id: str, body: CampaignIntentIn) -> CampaignIntentOut:
    campaign, now = await visible_campaign(session, actor, campaign_id)
    if campaign.state != "published":
        raise Conflict("the campaign is closed", code="campaign_closed")
    wanted = list(dict.fromkeys(body.creator_ids or []))
    eligible = await repo.eligible_among(session, campaign.id, wanted)
    for index, creator_id in enumerate(body.creator_ids or []):
        if creator_id not in eligible:
            raise ValidationFailed(
                msg("'{creator_id}' is not a pre-selected creator of this campaign", creator_id=creator_id),
                loc=["body", "creator_ids", index],
            )
    merchant = await accounts_repo.account_by_id(session, actor.id)
    intent = {
        "id": id_for(CampaignIntent),
        "campaign_id": campaign.id,
        "merchant_id": actor.id,
        "description": body.description,
        "creator_ids": wanted,
        "created_at": now,
    }
    await repo.insert_intent(
        session,
        intent,
        also=[
            part
            for creator_id in wanted
            for part in message_rows(
                creator_id,
                "campaign_intent.created",
                "商家发布了合作意向",
                body.description[:200],
                {"intent_id": intent["id"], "campaign_id": campaign.id},
                now,
            )
        ],
    )
    return CampaignIntentOut(**intent, shop_name=merchant.shop_name if merchant else None)


async def list_intents(
    session: AsyncSession, actor: Actor, campaign_id: str, *, limit: int, cursor: str | None
) -> PageOut[CampaignIntentOut]:
    campaign, _ = await visible_campaign(session, actor, campaign_id)
    if actor.role == "creator" and not campaign.eligible:
        raise Forbidden("you are not pre-selected for this campaign", code="not_eligible")
    page = await repo.intents_page(session, campaign.id, actor.role, actor.id, limit=limit, cursor=cursor)
    return PageOut[CampaignIntentOut](
        items=[CampaignIntentOut.model_validate(r, from_attributes=True) for r in page.items], next_cursor=page.next_cursor
    )
