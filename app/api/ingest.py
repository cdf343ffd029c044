from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.api.deps import Session, roles
from app.api.routing import TxRoute
from app.domain import ingest
from app.domain.ingest import IngestResult, LiveSessionIn, LiveSessionOut, MerchantTiersIn, OrdersIn
from app.state.core import Actor

router = APIRouter(prefix="/v1/ingest", tags=["ingest"], route_class=TxRoute)
Platform = Annotated[Actor, Depends(roles("platform"))]


@router.post("/orders", response_model=IngestResult, name="ingest_orders")
async def ingest_orders(body: OrdersIn, session: Session, _: Platform):
    """Upsert alliance orders by `external_id`; a later push with `refunded` turns one into a refund."""
    return await ingest.ingest_orders(session, body)


@router.post("/live-sessions", response_model=LiveSessionOut, name="ingest_live_session")
async def ingest_live_session(body: LiveSessionIn, session: Session, _: Platform, response: Response):
    """Pushed when a session starts and again when it ends; starts and ends drive task orders
    and campaign signups."""
    out = await ingest.ingest_live_session(session, body)
    response.status_code = 201 if out.created else 200
    return out


@router.post("/merchant-tiers", response_model=IngestResult, name="ingest_merchant_tiers")
async def ingest_merchant_tiers(body: MerchantTiersIn, session: Session, _: Platform):
    return await ingest.ingest_merchant_tiers(session, body)
