"""Demo data of the campaigns module (listed in `app/modules.py`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import campaigns as repo
from app.domain.campaigns.schemas import CampaignCreate, CampaignEligibleCreatorsIn, CampaignSignupCreate
from app.domain.campaigns.service import campaign_action, create_campaign, set_eligible
from app.domain.campaigns.signups import create_signup
from app.state import clock
from app.state.core import Actor

DEMO_TITLE = "双11 直播间奖励 (demo)"


async def demo_step(session: AsyncSession, accounts: dict[str, Any]) -> list[str]:
    """A published campaign with the demo creator pre-selected and its signup listing the demo
    merchant (待商家确认). Idempotent (by title)."""
    operator, creator, merchant = accounts.get("operator"), accounts.get("creator"), accounts.get("merchant")
    if not (operator and creator and merchant):
        return []
    if await repo.campaign_titled(session, DEMO_TITLE):
        return []
    now = await clock.now(session)
    op = Actor(operator.id, "operator")
    campaign = await create_campaign(
        session,
        op,
        CampaignCreate(
            title=DEMO_TITLE,
            description="平台圈定达人报名，商家与平台审核，流量扶持，提报商品，确认库存，开播。",
            signup_deadline=now + timedelta(days=3),
            product_deadline=now + timedelta(days=5),
            live_from=now + timedelta(days=6),
            live_to=now + timedelta(days=13),
        ),
    )
    await set_eligible(session, op, campaign.id, CampaignEligibleCreatorsIn(creator_ids=[creator.id]))
    await campaign_action(session, op, campaign.id, "publish")
    signup = await create_signup(
        session,
        Actor(creator.id, "creator"),
        campaign.id,
        CampaignSignupCreate(shop_ids=[merchant.id], planned_live_at=now + timedelta(days=7), note="想带旗舰手机"),
    )
    return [f"  campaign {campaign.id} published; signup {signup.id} awaits the merchant"]
