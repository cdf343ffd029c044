"""Facts from the upstream commerce systems, each push idempotent by `external_id`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.accounts import Account, Product
from app.db.models.facts import LiveSession, MerchantTier, SalesOrder
from app.domain import clock
from app.domain.errors import ValidationFailed
from app.domain.schemas import Strict
from app.domain.signals import live_session_ended, live_session_started, sales_orders_ingested

ExternalId = Annotated[str, Field(min_length=1, max_length=100)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a time zone is required (RFC 3339)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class Channel(str, Enum):
    live = "live"
    video = "video"
    shop_window = "shop_window"
    other = "other"


class OrderStatus(str, Enum):
    paid = "paid"
    refunded = "refunded"


class OrderIn(Strict):
    external_id: ExternalId
    shop_id: str = Field(max_length=40)
    product_id: str = Field(max_length=40)
    creator_id: str | None = Field(default=None, max_length=40)
    channel: Channel
    live_session_id: str | None = Field(default=None, max_length=100,
                                        description="the live session's id here, or its upstream external_id")
    amount_fen: int = Field(ge=0, le=10**13)
    status: OrderStatus
    paid_at: AwareDatetime


class OrdersIn(Strict):
    orders: list[OrderIn] = Field(min_length=1, max_length=1000)


class IngestResult(BaseModel):
    inserted: int
    updated: int
    unchanged: int


class LiveSessionIn(Strict):
    external_id: ExternalId
    host_id: str = Field(max_length=40)
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    peak_viewers: int = Field(default=0, ge=0, le=10**10)
    room_url: str = Field(min_length=1, max_length=500)


class LiveSessionOut(BaseModel):
    id: str
    external_id: str
    host_id: str
    started_at: datetime
    ended_at: datetime | None
    peak_viewers: int
    room_url: str
    created: bool


class TierIn(Strict):
    merchant_id: str = Field(max_length=40)
    tier: int = Field(ge=0, le=4)


class MerchantTiersIn(Strict):
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    tiers: list[TierIn] = Field(min_length=1, max_length=10000)

    @field_validator("tiers")
    @classmethod
    def _unique(cls, tiers: list[TierIn]) -> list[TierIn]:
        if len({t.merchant_id for t in tiers}) != len(tiers):
            raise ValueError("a merchant appears twice")
        return tiers


_ORDER_FIELDS = ("shop_id", "product_id", "creator_id", "channel", "live_session_id", "amount_fen", "status", "paid_at")


async def ingest_orders(session: AsyncSession, body: OrdersIn) -> IngestResult:
    if len({o.external_id for o in body.orders}) != len(body.orders):
        raise ValidationFailed("an external_id appears twice in one push", loc=["body", "orders"])
    now = await clock.now(session)
    products = {p.id: p for p in await session.scalars(
        select(Product).where(Product.id.in_({o.product_id for o in body.orders})))}
    creator_ids = {o.creator_id for o in body.orders if o.creator_id}
    creators = set(await session.scalars(select(Account.id).where(
        Account.id.in_(creator_ids), Account.role == "creator"))) if creator_ids else set()
    session_refs = {o.live_session_id for o in body.orders if o.live_session_id}
    sessions: dict[str, str] = {}
    if session_refs:
        for lid, ext in (await session.execute(select(LiveSession.id, LiveSession.external_id).where(
                (LiveSession.id.in_(session_refs)) | (LiveSession.external_id.in_(session_refs))))).all():
            sessions[lid] = lid
            sessions[ext] = lid
    existing = {o.external_id: o for o in await session.scalars(
        select(SalesOrder).where(SalesOrder.external_id.in_([o.external_id for o in body.orders]))
        .with_for_update())}
    inserted = updated = unchanged = 0
    touched: list[SalesOrder] = []
    for index, item in enumerate(body.orders):
        product = products.get(item.product_id)
        if product is None or product.shop_id != item.shop_id:
            raise ValidationFailed("unknown product of that shop", loc=["body", "orders", index, "product_id"])
        if item.creator_id and item.creator_id not in creators:
            raise ValidationFailed("unknown creator", loc=["body", "orders", index, "creator_id"])
        values = item.model_dump(mode="python", exclude={"external_id"})
        values["channel"] = item.channel.value
        values["status"] = item.status.value
        if item.live_session_id:
            values["live_session_id"] = sessions.get(item.live_session_id, item.live_session_id)
        row = existing.get(item.external_id)
        if row is None:
            row = SalesOrder(external_id=item.external_id, updated_at=now, **values)
            session.add(row)
            inserted += 1
        elif all(getattr(row, f) == values[f] for f in _ORDER_FIELDS):
            unchanged += 1
            continue
        else:
            for field in _ORDER_FIELDS:
                setattr(row, field, values[field])
            row.updated_at = now
            updated += 1
        touched.append(row)
    await session.flush()
    if touched:
        await sales_orders_ingested.send(session, orders=touched)
    return IngestResult(inserted=inserted, updated=updated, unchanged=unchanged)


async def ingest_live_session(session: AsyncSession, body: LiveSessionIn) -> LiveSessionOut:
    host = await session.get(Account, body.host_id)
    if host is None or host.role not in ("creator", "merchant"):
        raise ValidationFailed("the host must be a creator or a merchant", loc=["body", "host_id"])
    if body.ended_at is not None and body.ended_at < body.started_at:
        raise ValidationFailed("ended_at is before started_at", loc=["body", "ended_at"])
    row = await session.scalar(select(LiveSession).where(LiveSession.external_id == body.external_id)
                               .with_for_update())
    created = row is None
    was_ended = False
    if row is None:
        row = LiveSession(**body.model_dump())
        session.add(row)
    else:
        if row.host_id != body.host_id:
            raise ValidationFailed("a live session cannot change host", loc=["body", "host_id"])
        was_ended = row.ended_at is not None
        row.started_at = body.started_at
        row.peak_viewers = max(row.peak_viewers, body.peak_viewers)
        row.room_url = body.room_url
        if body.ended_at is not None:
            row.ended_at = body.ended_at
    await session.flush()
    if created:
        await live_session_started.send(session, live_session=row)
    if row.ended_at is not None and not was_ended:
        await live_session_ended.send(session, live_session=row)
    return LiveSessionOut(id=row.id, external_id=row.external_id, host_id=row.host_id,
                          started_at=row.started_at, ended_at=row.ended_at, peak_viewers=row.peak_viewers,
                          room_url=row.room_url, created=created)


async def ingest_merchant_tiers(session: AsyncSession, body: MerchantTiersIn) -> IngestResult:
    ids = [t.merchant_id for t in body.tiers]
    merchants = set(await session.scalars(select(Account.id).where(Account.id.in_(ids), Account.role == "merchant")))
    for index, item in enumerate(body.tiers):
        if item.merchant_id not in merchants:
            raise ValidationFailed("unknown merchant", loc=["body", "tiers", index, "merchant_id"])
    existing = {t.merchant_id: t for t in await session.scalars(
        select(MerchantTier).where(MerchantTier.month == body.month, MerchantTier.merchant_id.in_(ids)))}
    inserted = updated = unchanged = 0
    for item in body.tiers:
        row = existing.get(item.merchant_id)
        if row is None:
            session.add(MerchantTier(merchant_id=item.merchant_id, month=body.month, tier=item.tier))
            inserted += 1
        elif row.tier != item.tier:
            row.tier = item.tier
            updated += 1
        else:
            unchanged += 1
    await session.flush()
    return IngestResult(inserted=inserted, updated=updated, unchanged=unchanged)


