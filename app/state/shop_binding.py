"""Machine `shop_binding`: an agency invites a shop to 直播基地合作; the merchant accepts."""

from __future__ import annotations

from app.db.models.live_bases import ShopBinding
from app.state.core import Ctx, Workflow, rule


def _is_merchant(ctx: Ctx) -> bool:
    return ctx.row.shop_id == ctx.actor.id


def _is_agency(ctx: Ctx) -> bool:
    return ctx.row.agency_id == ctx.actor.id


def _is_party(ctx: Ctx) -> bool:
    return _is_merchant(ctx) or _is_agency(ctx)


SHOP_BINDING = Workflow(
    "shop_binding", model=ShopBinding, initial="invited",
    states=["invited", "active", "declined", "revoked", "expired", "terminated"],
    final_states=["declined", "revoked", "expired", "terminated"],
    parties=lambda row: [row.agency_id, row.shop_id],
    description="An agency binds a shop (店铺绑定, 直播基地合作); its qualifying products join the pool.",
    rules=[
        rule("accept", "invited", "active", "merchant", guard=_is_merchant),
        rule("decline", "invited", "declined", "merchant", guard=_is_merchant),
        rule("revoke", "invited", "revoked", "agency", guard=_is_agency),
        rule("expire", "invited", "expired", "system", description="7 days after the invitation"),
        rule("terminate", "active", "terminated", ("merchant", "agency"), guard=_is_party),
    ])
