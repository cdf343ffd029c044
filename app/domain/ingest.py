"""Facts from the upstream commerce systems, each push idempotent by `external_id`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.core.i18n import N_, msg
from app.core.times import AwareUtcDatetime, UtcDatetime, iso_z
from app.db.repositories import accounts as accounts_repo
from app.db.repositories import ingest as repo
from app.db.repositories import products as products_repo
from app.db.repositories.ingest import SalesOrderRecord
from app.domain.schemas import Strict
from app.domain.signals import live_session_ended, live_session_started, sales_orders_ingested
from app.state import clock

ExternalId = Annotated[str, Field(min_length=1, max_length=100)]
# How far ahead of the service's clock an upstream time may be and still be a fact (the two
# systems' clocks differ by a little): a live session that starts, or an order paid, later
# than this is refused (security.md, "Facts from upstream are checked").
CLOCK_SKEW = timedelta(minutes=5)


def _not_in_future(moment: datetime | None, now: datetime, what: str, loc: list[str | int]) -> None:
    if moment is not None and moment > now + CLOCK_SKEW:
        raise ValidationFailed(
            msg("{what} is in the future (the service's clock says {now})", what=what, now=iso_z(now)), loc=loc
        )


AwareDatetime = AwareUtcDatetime


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
    live_session_id: str | None = Field(
        default=None, max_length=100, description="the live session's id here, or its upstream external_id"
    )
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
    started_at: UtcDatetime
    ended_at: UtcDatetime | None
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
            raise ValueError(N_("a merchant appears twice"))
        return tiers


_ORDER_FIELDS = ("shop_id", "product_id", "creator_id", "channel", "live_session_id", "amount_fen", "status", "paid_at")


async def ingest_orders(session: AsyncSession, body: OrdersIn) -> IngestResult:
    if len({o.external_id for o in body.orders}) != len(body.orders):
        raise ValidationFailed("an external_id appears twice in one push", loc=["body", "orders"])
    now = await clock.now(session)
    for index, item in enumerate(body.orders):
        _not_in_future(item.paid_at, now, "paid_at", ["body", "orders", index, "paid_at"])
    shops = await products_repo.shops_of_products(session, {o.product_id for o in body.orders})
    creators = await accounts_repo.ids_of_role(session, {o.creator_id for o in body.orders if o.creator_id}, "creator")
    sessions = await repo.live_session_ids_by_ref(session, {o.live_session_id for o in body.orders if o.live_session_id})
    existing = await repo.lock_sales_orders(session, [o.external_id for o in body.orders])
    inserted = updated = unchanged = 0
    new: list[SalesOrderRecord] = []
    rewritten: list[SalesOrderRecord] = []
    touched: list[SalesOrderRecord] = []
    for index, item in enumerate(body.orders):
        if shops.get(item.product_id) != item.shop_id:
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
            row = repo.new_sales_order({"external_id": item.external_id, "updated_at": now, **values})
            new.append(row)
            inserted += 1
        elif all(getattr(row, f) == values[f] for f in _ORDER_FIELDS):
            unchanged += 1
            continue
        else:
            row = replace(row, **{f: values[f] for f in _ORDER_FIELDS}, updated_at=now)
            rewritten.append(row)
            updated += 1
        touched.append(row)
    await repo.insert_sales_orders(session, new)
    await repo.update_sales_orders(session, rewritten)
    if touched:
        await sales_orders_ingested.send(session, orders=touched)
    return IngestResult(inserted=inserted, updated=updated, unchanged=unchanged)


async def ingest_live_session(session: AsyncSession, body: LiveSessionIn) -> LiveSessionOut:
    now = await clock.now(session)
    _not_in_future(body.started_at, now, "started_at", ["body", "started_at"])
    host = await accounts_repo.account_by_id(session, body.host_id)
    if host is None or host.role not in ("creator", "merchant"):
        raise ValidationFailed("the host must be a creator or a merchant", loc=["body", "host_id"])
    if body.ended_at is not None and body.ended_at < body.started_at:
        raise ValidationFailed("ended_at is before started_at", loc=["body", "ended_at"])
    row = await repo.lock_live_session(session, body.external_id)
    created = row is None
    was_ended = False
    if row is None:
        row = await repo.insert_live_session(session, body.model_dump())
    else:
        if row.host_id != body.host_id:
            raise ValidationFailed("a live session cannot change host", loc=["body", "host_id"])
        was_ended = row.ended_at is not None
        # a push without `ended_at` keeps the recorded end: what is stored must still end after
        # it started, so the check is of the merged session, before anything is written
        ended_at = body.ended_at if body.ended_at is not None else row.ended_at
        if ended_at is not None and ended_at < body.started_at:
            raise ValidationFailed(
                msg(
                    "started_at is after the session's recorded ended_at ({ended_at})",
                    ended_at=iso_z(ended_at),
                ),
                loc=["body", "started_at"],
            )
        row = replace(
            row,
            started_at=body.started_at,
            peak_viewers=max(row.peak_viewers, body.peak_viewers),
            room_url=body.room_url,
            ended_at=ended_at,
        )
        await repo.update_live_session(session, row)
    if created:
        await live_session_started.send(session, live_session=row)
    if row.ended_at is not None and not was_ended:
        await live_session_ended.send(session, live_session=row)
    return LiveSessionOut(
        id=row.id,
        external_id=row.external_id,
        host_id=row.host_id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        peak_viewers=row.peak_viewers,
        room_url=row.room_url,
        created=created,
    )


async def ingest_merchant_tiers(session: AsyncSession, body: MerchantTiersIn) -> IngestResult:
    ids = [t.merchant_id for t in body.tiers]
    merchants = await accounts_repo.ids_of_role(session, ids, "merchant")
    for index, item in enumerate(body.tiers):
        if item.merchant_id not in merchants:
            raise ValidationFailed("unknown merchant", loc=["body", "tiers", index, "merchant_id"])
    existing = await repo.tiers_of_month(session, body.month, ids)
    new: dict[str, int] = {}
    changed: dict[str, int] = {}  # merchant-tier row id -> new tier
    unchanged = 0
    for item in body.tiers:
        row = existing.get(item.merchant_id)
        if row is None:
            new[item.merchant_id] = item.tier
        elif row.tier != item.tier:
            changed[row.id] = item.tier
        else:
            unchanged += 1
    await repo.insert_tiers(session, body.month, new)
    await repo.update_tiers(session, changed)
    return IngestResult(inserted=len(new), updated=len(changed), unchanged=unchanged)
