"""Machine `shop_binding`: an agency invites a shop to 直播基地合作; the merchant accepts."""

from __future__ import annotations

from app.db.models.live_bases import ShopBinding
from app.db.repositories.live_bases import ShopBindingRecord
from app.state.binding import binding_workflow

SHOP_BINDING = binding_workflow(
    "shop_binding",
    model=ShopBinding,
    record=ShopBindingRecord,
    invitee_role="merchant",
    invitee_column="shop_id",
    description="An agency binds a shop (店铺绑定, 直播基地合作); its qualifying products join the pool.",
)
