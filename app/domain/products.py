"""Merchants' products."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.times import UtcDatetime
from app.db.repositories import products as repo
from app.db.repositories.products import ProductRecord
from app.domain.schemas import PageOut, Strict
from app.domain.signals import product_changed
from app.state import clock
from app.state.core import Actor


class ProductStatus(str, Enum):
    on_sale = "on_sale"
    off_sale = "off_sale"


class ProductCreate(Strict):
    title: str = Field(min_length=1, max_length=200)
    brand: str | None = Field(default=None, min_length=1, max_length=100)
    price_fen: int = Field(ge=0, le=10**12)
    inventory: int = Field(ge=0, le=10**12)
    general_commission_bp: int | None = Field(default=None, ge=0, le=10000, description="null: not in the general plan")
    status: ProductStatus = ProductStatus.on_sale


class ProductPatch(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    brand: str | None = Field(default=None, min_length=1, max_length=100)
    price_fen: int | None = Field(default=None, ge=0, le=10**12)
    inventory: int | None = Field(default=None, ge=0, le=10**12, description="补充库存: the new inventory")
    general_commission_bp: int | None = Field(default=None, ge=0, le=10000)
    status: ProductStatus | None = None


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    shop_id: str
    title: str
    brand: str | None
    price_fen: int
    inventory: int
    general_commission_bp: int | None
    status: ProductStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime


async def create_product(session: AsyncSession, actor: Actor, body: ProductCreate) -> ProductRecord:
    now = await clock.now(session)
    product = await repo.insert_product(
        session, {"shop_id": actor.id, "created_at": now, "updated_at": now, **body.model_dump(mode="json")}
    )
    await product_changed.send(session, product=product)
    return product


async def get_product(session: AsyncSession, product_id: str) -> ProductRecord:
    product = await repo.product_by_id(session, product_id)
    if product is None:
        raise NotFound("no such product")
    return product


_NULLABLE = {"brand", "general_commission_bp"}


async def patch_product(session: AsyncSession, actor: Actor, product_id: str, body: ProductPatch) -> ProductRecord:
    product = await repo.lock_product(session, product_id)
    if product is None or product.shop_id != actor.id:
        raise NotFound("no such product")
    changes: dict[str, Any] = {}
    for field in body.model_fields_set:
        value = getattr(body, field)
        if value is None and field not in _NULLABLE:
            continue
        changes[field] = value.value if isinstance(value, Enum) else value
    product = await repo.update_product(session, replace(product, **changes, updated_at=await clock.now(session)))
    await product_changed.send(session, product=product)
    return product


async def list_products(session: AsyncSession, *, shop_id: str | None, limit: int, cursor: str | None) -> PageOut[ProductOut]:
    items, cursor = await repo.products_page(session, shop_id=shop_id, limit=limit, cursor=cursor)
    return PageOut[ProductOut](items=items, next_cursor=cursor)
