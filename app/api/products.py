from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.api.deps import CurrentActor, Page, Session, roles
from app.api.routing import TxRoute
from app.domain import products
from app.domain.products import ProductCreate, ProductOut, ProductPatch
from app.domain.schemas import PageOut
from app.state.core import Actor

router = APIRouter(prefix="/v1/products", tags=["products"], route_class=TxRoute)
Merchant = Annotated[Actor, Depends(roles("merchant"))]


@router.post("", response_model=ProductOut, status_code=status.HTTP_201_CREATED, name="create_product")
async def create_product(body: ProductCreate, session: Session, actor: Merchant):
    return await products.create_product(session, actor, body)


@router.get("", response_model=PageOut[ProductOut], name="list_products")
async def list_products(
    session: Session, _: CurrentActor, page: Page, shop_id: Annotated[str | None, Query(max_length=40)] = None
):
    return await products.list_products(session, shop_id=shop_id, limit=page.limit, cursor=page.cursor)


@router.get("/{product_id}", response_model=ProductOut, name="get_product")
async def get_product(product_id: str, session: Session, _: CurrentActor):
    return await products.get_product(session, product_id)


@router.patch("/{product_id}", response_model=ProductOut, name="update_product")
async def patch_product(product_id: str, body: ProductPatch, session: Session, actor: Merchant):
    """The owner edits its product; a new `inventory` is 补充库存."""
    return await products.patch_product(session, actor, product_id, body)
