"""Demo data of the live bases module: a base of the demo agency with the demo merchant's shop
bound and one pool product listed (idempotent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import live_bases as repo
from app.domain.live_bases.pool import set_listed
from app.domain.live_bases.schemas import LiveBaseCreate, ShopBindingCreate
from app.domain.live_bases.service import create_base, create_shop_binding, fire_shop_binding
from app.state.core import Actor


async def demo_step(session: AsyncSession, accounts: dict[str, Any]) -> list[str]:
    agency, merchant = accounts.get("agency"), accounts.get("merchant")
    if agency is None or merchant is None:
        return []
    if await repo.has_base(session, agency.id):
        return []
    agency_actor, merchant_actor = Actor(agency.id, "agency"), Actor(merchant.id, "merchant")
    base = await create_base(session, agency_actor, LiveBaseCreate(name="星光直播基地", address="杭州市余杭区直播产业园 1 号"))
    binding = await create_shop_binding(session, agency_actor, ShopBindingCreate(shop_id=merchant.id))
    await fire_shop_binding(session, merchant_actor, binding.id, "accept", None)
    first = await repo.first_qualifying_item(session, agency.id)
    if first is not None:
        await set_listed(session, agency_actor, first, True)
    return [f"  live base {base.id} of 'agency' with the merchant's shop bound and one pool product listed"]
