"""The product pool (选品管理): every product of an agency's actively bound shops, whether it
qualifies (on sale, a brand, the shop's experience score) and whether the agency listed it on
its bases' home pages. Qualification follows the products and the shops as they change."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Conflict, NotFound
from app.db.base import id_for
from app.db.models.live_bases import PoolItem
from app.db.repositories import live_bases as repo
from app.db.repositories.live_bases import PoolItemView, ShopCardRecord
from app.domain.live_bases.schemas import PoolItemOut, ShopCard
from app.domain.products import ProductOut
from app.domain.schemas import PageOut
from app.state import clock
from app.state.core import Actor


def qualifies(status: str, brand: str | None, experience_score: Decimal | None) -> bool:
    threshold = Decimal(str(get_settings().pool_min_experience_score))
    return (
        status == "on_sale"
        and bool(brand and brand.strip())
        and experience_score is not None
        and Decimal(experience_score) >= threshold
    )


def shop_card(shop: ShopCardRecord) -> ShopCard:
    score = shop.experience_score
    return ShopCard(id=shop.id, shop_name=shop.shop_name, experience_score=float(score) if score is not None else None)


def _item_out(item: PoolItemView) -> PoolItemOut:
    return PoolItemOut(
        item_id=item.id,
        product=ProductOut.model_validate(item.product),
        shop=shop_card(item.shop),
        qualifies=item.qualifies,
        listed=item.listed,
    )


def _item(agency_id: str, product: Any, experience_score: Decimal | None, now: datetime) -> dict[str, Any]:
    """A product's row in an agency's pool (new, or the qualification of the existing one)."""
    return {
        "id": id_for(PoolItem),
        "agency_id": agency_id,
        "shop_id": product.shop_id,
        "product_id": product.id,
        "qualifies": qualifies(product.status, product.brand, experience_score),
        "listed": False,
        "created_at": now,
        "updated_at": now,
    }


async def shop_bound(session: AsyncSession, agency_id: str, shop_id: str, now: datetime) -> None:
    """A shop binding became active: the shop's products join the agency's pool."""
    exists, score, products = await repo.products_of_shop(session, shop_id)
    if exists:
        await repo.upsert_pool_items(session, [_item(agency_id, p, score, now) for p in products])


async def shop_unbound(session: AsyncSession, agency_id: str, shop_id: str) -> None:
    """A shop binding ended: the shop's products leave the agency's pool."""
    await repo.unpool_shop(session, agency_id, shop_id)


async def _on_product_changed(session: AsyncSession, product: Any) -> None:
    agencies, score = await repo.agencies_bound_to(session, product.shop_id)
    if agencies:
        now = await clock.now(session)
        await repo.upsert_pool_items(session, [_item(agency_id, product, score, now) for agency_id in agencies])


async def _on_account_changed(session: AsyncSession, account: Any, fields: set[str]) -> None:
    if account.role != "merchant" or "experience_score" not in fields:
        return
    items = await repo.pool_items_of_shop(session, account.id)
    changes = []
    for item in items:
        now_qualifies = qualifies(item.status, item.brand, account.experience_score)
        if now_qualifies != item.qualifies or (item.listed and not now_qualifies):
            changes.append((item.id, now_qualifies))
    if changes:
        await repo.requalify(session, changes, await clock.now(session))


async def list_pool(
    session: AsyncSession, actor: Actor, *, listed: bool | None, limit: int, cursor: str | None
) -> PageOut[PoolItemOut]:
    page = await repo.pool_page(session, actor.id, listed=listed, limit=limit, cursor=cursor)
    return PageOut[PoolItemOut](items=[_item_out(i) for i in page.items], next_cursor=page.next_cursor)


async def set_listed(session: AsyncSession, actor: Actor, item_id: str, listed: bool) -> PoolItemOut:
    """上架 / 下架 (409 `not_qualified` when listing an item that does not qualify)."""
    item = await repo.lock_pool_item(session, item_id)
    if item is None or item.agency_id != actor.id:
        raise NotFound("no such pool item")
    if listed and not item.qualifies:
        raise Conflict(
            "this product does not qualify for the pool (on sale, a brand, the shop's experience score)", code="not_qualified"
        )
    if item.listed != listed:
        await repo.set_listed(session, item.id, listed, await clock.now(session))
        item = replace(item, listed=listed)
    return _item_out(item)
