"""The transitions of a campaign signup: every listed shop decides for itself, then the platform;
traffic support, products, stock confirmations.

The per-shop steps also write the deciding shop's row; the signup's row is locked (`FOR
UPDATE`) while a step reads the other shops' decisions, so two shops deciding at once run one
after the other and exactly one of them moves the signup on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.db.base import id_for
from app.db.bulk import Part
from app.db.models.campaigns import CampaignSignupItem
from app.db.repositories import campaigns as repo
from app.db.repositories.campaigns import SignupItem, SignupWithParts
from app.domain.campaigns.schemas import (
    CampaignGrantTrafficIn,
    CampaignSignupOut,
    CampaignSubmitProductsIn,
)
from app.domain.campaigns.signups import (
    _destination,
    load_signup,
    signup_out,
)
from app.domain.notifications import message_rows
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.core import Actor


def _with_shop(row: SignupWithParts, shop_id: str, **changes: Any) -> SignupWithParts:
    return replace(row, shops=tuple(replace(s, **changes) if s.shop_id == shop_id else s for s in row.shops))


async def merchant_decide(
    session: AsyncSession, actor: Actor, signup_id: str, approve: bool, reason: str | None = None
) -> CampaignSignupOut:
    action = "merchant-approve" if approve else "merchant-reject"
    row, now = await load_signup(session, actor, signup_id, lock=True)
    extra: dict[str, object] = {"shop_id": actor.id}
    to = _destination(row, action, actor, now, extra)
    also = (
        message_rows(
            row.creator_id,
            f"campaign_signup.{to}",
            "报名商家确认结果",
            f"Every listed shop decided on your signup: {to}.",
            {"signup_id": row.id},
            now,
        )
        if to not in (None, row.state)
        else []
    )
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, action, actor, now=now, reason=reason, extra=extra, event_data={"shop_id": actor.id}, also=also
    )
    decision = "approved" if approve else "rejected"
    await repo.record_decision(session, row.id, actor.id, decision, reason, now)
    moved = _with_shop(moved, actor.id, decision=decision, decision_reason=reason, decided_at=now)
    return signup_out(moved, actor, now)


async def simple_action(
    session: AsyncSession, actor: Actor, signup_id: str, action: str, reason: str | None = None
) -> CampaignSignupOut:
    """platform-approve, platform-reject, platform-confirm-stock, withdraw."""
    row, now = await load_signup(session, actor, signup_id, lock=True)
    to = _destination(row, action, actor, now)
    also = (
        message_rows(
            row.creator_id, f"campaign_signup.{to}", "活动报名状态更新", f"Your signup is now {to}.", {"signup_id": row.id}, now
        )
        if to is not None and actor.id != row.creator_id
        else []
    )
    row = await CAMPAIGN_SIGNUP.fire(session, row, action, actor, now=now, reason=reason, also=also)
    return signup_out(row, actor, now)


async def grant_traffic(session: AsyncSession, actor: Actor, signup_id: str, body: CampaignGrantTrafficIn) -> CampaignSignupOut:
    row, now = await load_signup(session, actor, signup_id, lock=True)
    row = await CAMPAIGN_SIGNUP.fire(
        session,
        row,
        "grant-traffic",
        actor,
        now=now,
        reason=body.note,
        event_data={"traffic_units": body.traffic_units},
        changes={"traffic_units": body.traffic_units, "traffic_note": body.note},
        also=message_rows(
            row.creator_id,
            "campaign_signup.traffic_granted",
            "流量扶持已发放",
            f"{body.traffic_units} traffic units granted; submit your products.",
            {"signup_id": row.id},
            now,
        ),
    )
    return signup_out(row, actor, now)


async def _planned_items(session: AsyncSession, row: SignupWithParts, body: CampaignSubmitProductsIn) -> tuple[SignupItem, ...]:
    """The submitted products, checked: each on sale, of a shop that approved, listed once."""
    approved = {s.shop_id for s in row.shops if s.decision == "approved"}
    products = await repo.plannable_products(session, [i.product_id for i in body.items])
    seen: set[str] = set()
    for index, item in enumerate(body.items):
        product = products.get(item.product_id)
        loc: list[str | int] = ["body", "items", index, "product_id"]
        if product is None or product.shop_id not in approved:
            raise ValidationFailed("not a product of a shop that approved this signup", loc=loc)
        if product.status != "on_sale":
            raise ValidationFailed("this product is off sale", loc=loc)
        if item.product_id in seen:
            raise ValidationFailed("a product is listed twice", loc=loc)
        seen.add(item.product_id)
    return tuple(
        SignupItem(
            product_id=i.product_id,
            shop_id=products[i.product_id].shop_id,
            title=products[i.product_id].title,
            position=n,
            planned_quantity=i.planned_quantity,
        )
        for n, i in enumerate(body.items)
    )


async def submit_products(
    session: AsyncSession, actor: Actor, signup_id: str, body: CampaignSubmitProductsIn
) -> CampaignSignupOut:
    """提报商品: the list replaces the previous one and resets every shop's stock confirmation."""
    row, now = await load_signup(session, actor, signup_id, lock=True)
    items: tuple[SignupItem, ...] = ()
    also: list[Part] = []
    # a refused transition (403, 409) answers before the products are looked at
    if CAMPAIGN_SIGNUP.can(row, "submit-products", actor, now):
        items = await _planned_items(session, row, body)
        await repo.clear_plan(session, row.id)
        also = [
            (
                repo.signup_items,
                [
                    {
                        "id": id_for(CampaignSignupItem),
                        "signup_id": row.id,
                        "product_id": i.product_id,
                        "shop_id": i.shop_id,
                        "position": i.position,
                        "planned_quantity": i.planned_quantity,
                    }
                    for i in items
                ],
            ),
            *(
                part
                for shop_id in sorted({i.shop_id for i in items})
                for part in message_rows(
                    shop_id,
                    "campaign_signup.products_submitted",
                    "达人已提报商品，请确认库存",
                    "A creator planned products of your shop; check and confirm the stock.",
                    {"signup_id": row.id},
                    now,
                )
            ),
        ]
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, "submit-products", actor, now=now, event_data={"revision": row.state == "products_submitted"}, also=also
    )
    moved = replace(moved, items=items, shops=tuple(replace(s, stock_confirmed_at=None) for s in moved.shops))
    return signup_out(moved, actor, now)


async def merchant_confirm_stock(session: AsyncSession, actor: Actor, signup_id: str) -> CampaignSignupOut:
    row, now = await load_signup(session, actor, signup_id, lock=True)
    moved = await CAMPAIGN_SIGNUP.fire(
        session, row, "merchant-confirm-stock", actor, now=now, extra={"shop_id": actor.id}, event_data={"shop_id": actor.id}
    )
    await repo.confirm_stock(session, row.id, actor.id, now)
    return signup_out(_with_shop(moved, actor.id, stock_confirmed_at=now), actor, now)
