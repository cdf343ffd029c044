"""Statements on `products`: one product (read or locked), a page of a shop's (or every)
products, the shops of given products, a new product, a product's new values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from app.db.base import id_for, table_of
from app.db.models.accounts import Product
from app.db.pagination import key_after, page_of
from app.db.repositories._run import prepare_module, record_of, run

products = table_of(Product)


@dataclass(frozen=True, slots=True)
class ProductRecord:
    id: str
    shop_id: str
    title: str
    brand: str | None
    price_fen: int
    inventory: int
    general_commission_bp: int | None
    status: str
    created_at: datetime
    updated_at: datetime


_NAMES = tuple(f.name for f in fields(ProductRecord))
_COLUMNS = [products.c[name] for name in _NAMES]
# the ORM's column defaults (`status`), which Core inserts do not apply
_DEFAULTS = {c.key: c.default.arg for c in products.c if isinstance(c.default, ScalarElementColumnDefault)}
# what an owner's edit writes (the id, the shop and created_at never change)
EDITABLE = ("title", "brand", "price_fen", "inventory", "general_commission_bp", "status", "updated_at")

_BY_ID = select(*_COLUMNS).where(products.c.id == bindparam("id"))
_LOCK = _BY_ID.with_for_update()
_SHOPS = select(products.c.id, products.c.shop_id).where(products.c.id.in_(bindparam("ids", expanding=True)))
_INSERT = (
    insert(products).values({name: bindparam(f"v_{name}", type_=products.c[name].type) for name in _NAMES}).returning(*_COLUMNS)
)
_UPDATE = (
    update(products)
    .where(products.c.id == bindparam("product_id"))
    .values({name: bindparam(f"new_{name}", type_=products.c[name].type) for name in EDITABLE})
    .returning(*_COLUMNS)
)


def _page(*, of_shop: bool, after: bool):
    query = select(*_COLUMNS)
    if of_shop:
        query = query.where(products.c.shop_id == bindparam("shop_id"))
    if after:
        query = query.where(products.c.id < bindparam("after"))
    return query.order_by(products.c.id.desc()).limit(bindparam("limit", type_=Integer))


# newest first; one statement per (a shop's or all, first page or a later one)
_PAGES = {(of_shop, after): _page(of_shop=of_shop, after=after) for of_shop in (False, True) for after in (False, True)}


async def product_by_id(session: AsyncSession, product_id: str) -> ProductRecord | None:
    row = (await run(session, _BY_ID, {"id": product_id})).first()
    return None if row is None else record_of(ProductRecord, row)


async def lock_product(session: AsyncSession, product_id: str) -> ProductRecord | None:
    """The product, its row locked until the transaction ends (`FOR UPDATE`)."""
    row = (await run(session, _LOCK, {"id": product_id})).first()
    return None if row is None else record_of(ProductRecord, row)


async def shops_of_products(session: AsyncSession, product_ids: Iterable[str]) -> dict[str, str]:
    """product id -> its shop's id, for those of `product_ids` that exist."""
    wanted = sorted(set(product_ids))
    if not wanted:
        return {}
    return dict((await run(session, _SHOPS, {"ids": wanted})).tuples().all())


async def products_page(
    session: AsyncSession, *, shop_id: str | None, limit: int, cursor: str | None
) -> tuple[list[ProductRecord], str | None]:
    """A page of the products (of one shop if `shop_id`), newest first, and the next cursor."""
    after = key_after(cursor, products.c.id)
    params: dict[str, Any] = {"limit": limit + 1}
    if shop_id:
        params["shop_id"] = shop_id
    if after is not None:
        params["after"] = after
    result = await run(session, _PAGES[bool(shop_id), after is not None], params)
    return page_of([record_of(ProductRecord, row) for row in result], limit)


async def insert_product(session: AsyncSession, values: Mapping[str, Any]) -> ProductRecord:
    """A new product of `values` (every column but the id, which is generated, and those with a
    default)."""
    values = {**_DEFAULTS, **values}
    params = {f"v_{name}": values[name] for name in _NAMES if name != "id"}
    params["v_id"] = id_for(Product)
    return record_of(ProductRecord, (await run(session, _INSERT, params)).one())


async def update_product(session: AsyncSession, product: ProductRecord) -> ProductRecord:
    """Write the `EDITABLE` columns of `product` (locked by the caller); its row as stored."""
    values = asdict(product)
    params = {f"new_{name}": values[name] for name in EDITABLE}
    params["product_id"] = product.id
    return record_of(ProductRecord, (await run(session, _UPDATE, params)).one())


prepare_module(globals())
