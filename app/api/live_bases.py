"""Routes of the live bases module (达人直播基地): bases, creator and shop bindings, the product
pool, QR check-in, cooperations and base statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import Response

from app.api.deps import CurrentActor, Page, ReadSession, Session, link_or_roles, roles
from app.api.routing import TxRoute, one_write, replica_read
from app.core.times import iso_z
from app.domain import live_bases as lb
from app.domain.ingest import AwareDatetime
from app.domain.live_bases import (
    CheckInCodeOut,
    CheckInCreate,
    CheckInOut,
    CooperationOut,
    CreatorBindingCreate,
    CreatorBindingOut,
    CreatorBindingPatch,
    LiveBaseCreate,
    LiveBaseDetail,
    LiveBaseOut,
    PoolItemOut,
    ShopBindingCreate,
    ShopBindingOut,
    StatsOut,
)
from app.domain.live_bases.schemas import CheckInState, CooperationState, CreatorBindingState, ShopBindingState
from app.domain.schemas import PageOut, ReasonIn, history_list
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import Actor
from app.state.creator_binding import CREATOR_BINDING
from app.state.shop_binding import SHOP_BINDING

router = APIRouter(route_class=TxRoute)
Agency = Annotated[Actor, Depends(roles("agency"))]
Creator = Annotated[Actor, Depends(roles("creator"))]
AgencyOrOperator = Annotated[Actor, Depends(roles("agency", "operator"))]


def _reason(body: ReasonIn | None) -> str | None:
    return body.reason if body else None


# -- bases -----------------------------------------------------------------------------------
@router.post(
    "/v1/live-bases",
    response_model=LiveBaseOut,
    status_code=status.HTTP_201_CREATED,
    tags=["live bases"],
    name="create_live_base",
)
async def create_live_base(body: LiveBaseCreate, session: Session, actor: Agency):
    """An agency opens a live base (直播基地)."""
    return await lb.create_base(session, actor, body)


@router.get("/v1/live-bases", response_model=PageOut[LiveBaseOut], tags=["live bases"], name="list_live_bases")
async def list_live_bases(session: Session, actor: CurrentActor, page: Page):
    """Bases the caller may see: an agency its own, a creator every base (it may check in at any),
    a merchant the bases of the agencies its shop is bound to, an operator all."""
    return await lb.list_bases(session, actor, limit=page.limit, cursor=page.cursor)


@router.get("/v1/live-bases/{base_id}", response_model=LiveBaseDetail, tags=["live bases"], name="get_live_base")
async def get_live_base(base_id: str, session: Session, actor: CurrentActor):
    """The base's home page: its agency, the actively bound shops and the listed pool products."""
    return await lb.base_detail(session, actor, base_id)


@router.get(
    "/v1/live-bases/{base_id}/check-in-code", response_model=CheckInCodeOut, tags=["live bases"], name="get_check_in_code"
)
async def get_check_in_code(base_id: str, session: Session, actor: Agency):
    """A fresh signed check-in code of the base (valid `LC_CHECKIN_CODE_TTL_SECONDS`)."""
    return await lb.check_in_code(session, actor, base_id)


@router.get(
    "/v1/live-bases/{base_id}/check-in-code.svg",
    response_class=Response,
    response_model=None,
    tags=["live bases"],
    name="get_check_in_code_svg",
    responses={200: {"content": {"image/svg+xml": {}}, "description": "the QR code picture"}},
)
async def get_check_in_code_svg(
    base_id: str, session: Session, actor: Annotated[Actor, Depends(link_or_roles("agency"))]
) -> Response:
    """The QR code (SVG) of a fresh check-in code's URL, to print or show at the base: with a
    bearer token, or as the signed link `svg_url` of the check-in code (works in an `<img>`)."""
    picture = await lb.check_in_qr(session, actor, base_id)
    return Response(
        picture.svg,
        media_type="image/svg+xml",
        headers={"Cache-Control": "no-store", "X-Check-In-Expires-At": iso_z(picture.expires_at)},
    )


@router.get("/v1/live-bases/{base_id}/stats", response_model=StatsOut, tags=["live bases"], name="get_live_base_stats")
@replica_read
async def get_live_base_stats(
    base_id: str,
    session: ReadSession,
    actor: AgencyOrOperator,
    from_: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    to: Annotated[AwareDatetime | None, Query()] = None,
):
    """基地数据: GMV and orders of bound shops' products sold by creators bound to the agency or
    cooperating with the base while that binding or cooperation was active, plus check-ins and
    live sessions at the base. Defaults: the last 30 days."""
    return await lb.stats(session, actor, base_id, from_, to)


# -- creator bindings ------------------------------------------------------------------------
@router.post(
    "/v1/creator-bindings",
    response_model=CreatorBindingOut,
    status_code=status.HTTP_201_CREATED,
    tags=["live bases"],
    name="create_creator_binding",
)
async def create_creator_binding(body: CreatorBindingCreate, session: Session, actor: Agency):
    """The agency invites a creator to bind (达人绑定); the invitation expires after 7 days."""
    return await lb.create_creator_binding(session, actor, body)


@router.get("/v1/creator-bindings", response_model=PageOut[CreatorBindingOut], tags=["live bases"], name="list_creator_bindings")
async def list_creator_bindings(
    session: Session, actor: CurrentActor, page: Page, state: Annotated[CreatorBindingState | None, Query()] = None
):
    """The caller's creator bindings (agency or creator; an operator sees all)."""
    return await lb.list_creator_bindings(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.get(
    "/v1/creator-bindings/{binding_id}", response_model=CreatorBindingOut, tags=["live bases"], name="get_creator_binding"
)
async def get_creator_binding(binding_id: str, session: Session, actor: CurrentActor):
    """One creator binding with `live_count` (live sessions since it began) and `allowed_actions`."""
    return await lb.get_creator_binding(session, actor, binding_id)


@router.patch(
    "/v1/creator-bindings/{binding_id}", response_model=CreatorBindingOut, tags=["live bases"], name="update_creator_binding"
)
async def update_creator_binding(binding_id: str, body: CreatorBindingPatch, session: Session, actor: Agency):
    """The agency sets the creator's commission while the binding is active."""
    return await lb.patch_creator_binding(session, actor, binding_id, body)


@router.get(
    "/v1/creator-bindings/{binding_id}/history",
    response_model=history_list(CREATOR_BINDING),
    tags=["live bases"],
    name="get_creator_binding_history",
)
async def get_creator_binding_history(binding_id: str, session: Session, actor: CurrentActor):
    """Every transition of the binding."""
    return await lb.creator_binding_history(session, actor, binding_id)


async def _creator_binding_action(session, actor: Actor, binding_id: str, action: str, body: ReasonIn | None):
    return await lb.fire_creator_binding(session, actor, binding_id, action, _reason(body))


@router.post(
    "/v1/creator-bindings/{binding_id}/accept",
    response_model=CreatorBindingOut,
    tags=["live bases"],
    name="accept_creator_binding",
)
async def accept_creator_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The creator accepts (409 `already_bound` while it has another active binding)."""
    return await _creator_binding_action(session, actor, binding_id, "accept", body)


@router.post(
    "/v1/creator-bindings/{binding_id}/decline",
    response_model=CreatorBindingOut,
    tags=["live bases"],
    name="decline_creator_binding",
)
async def decline_creator_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The creator declines the invitation."""
    return await _creator_binding_action(session, actor, binding_id, "decline", body)


@router.post(
    "/v1/creator-bindings/{binding_id}/revoke",
    response_model=CreatorBindingOut,
    tags=["live bases"],
    name="revoke_creator_binding",
)
async def revoke_creator_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The agency withdraws its invitation."""
    return await _creator_binding_action(session, actor, binding_id, "revoke", body)


@router.post(
    "/v1/creator-bindings/{binding_id}/terminate",
    response_model=CreatorBindingOut,
    tags=["live bases"],
    name="terminate_creator_binding",
)
async def terminate_creator_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """Either side ends an active binding."""
    return await _creator_binding_action(session, actor, binding_id, "terminate", body)


# -- shop bindings ---------------------------------------------------------------------------
@router.post(
    "/v1/shop-bindings",
    response_model=ShopBindingOut,
    status_code=status.HTTP_201_CREATED,
    tags=["live bases"],
    name="create_shop_binding",
)
async def create_shop_binding(body: ShopBindingCreate, session: Session, actor: Agency):
    """The agency invites a shop to 直播基地合作 (`type: "live_base"`); expires after 7 days."""
    return await lb.create_shop_binding(session, actor, body)


@router.get("/v1/shop-bindings", response_model=PageOut[ShopBindingOut], tags=["live bases"], name="list_shop_bindings")
async def list_shop_bindings(
    session: Session, actor: CurrentActor, page: Page, state: Annotated[ShopBindingState | None, Query()] = None
):
    """The caller's shop bindings (agency or merchant; an operator sees all)."""
    return await lb.list_shop_bindings(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.get("/v1/shop-bindings/{binding_id}", response_model=ShopBindingOut, tags=["live bases"], name="get_shop_binding")
async def get_shop_binding(binding_id: str, session: Session, actor: CurrentActor):
    """One shop binding with its `allowed_actions`."""
    return await lb.get_shop_binding(session, actor, binding_id)


@router.get(
    "/v1/shop-bindings/{binding_id}/history",
    response_model=history_list(SHOP_BINDING),
    tags=["live bases"],
    name="get_shop_binding_history",
)
async def get_shop_binding_history(binding_id: str, session: Session, actor: CurrentActor):
    """Every transition of the binding."""
    return await lb.shop_binding_history(session, actor, binding_id)


async def _shop_binding_action(session, actor: Actor, binding_id: str, action: str, body: ReasonIn | None):
    return await lb.fire_shop_binding(session, actor, binding_id, action, _reason(body))


@router.post(
    "/v1/shop-bindings/{binding_id}/accept", response_model=ShopBindingOut, tags=["live bases"], name="accept_shop_binding"
)
async def accept_shop_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The merchant accepts: the shop's products join the agency's pool."""
    return await _shop_binding_action(session, actor, binding_id, "accept", body)


@router.post(
    "/v1/shop-bindings/{binding_id}/decline", response_model=ShopBindingOut, tags=["live bases"], name="decline_shop_binding"
)
async def decline_shop_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The merchant declines the invitation."""
    return await _shop_binding_action(session, actor, binding_id, "decline", body)


@router.post(
    "/v1/shop-bindings/{binding_id}/revoke", response_model=ShopBindingOut, tags=["live bases"], name="revoke_shop_binding"
)
async def revoke_shop_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The agency withdraws its invitation."""
    return await _shop_binding_action(session, actor, binding_id, "revoke", body)


@router.post(
    "/v1/shop-bindings/{binding_id}/terminate", response_model=ShopBindingOut, tags=["live bases"], name="terminate_shop_binding"
)
async def terminate_shop_binding(binding_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """Either side ends an active binding: the shop's products leave the agency's pool."""
    return await _shop_binding_action(session, actor, binding_id, "terminate", body)


# -- product pool ----------------------------------------------------------------------------
@router.get("/v1/product-pool", response_model=PageOut[PoolItemOut], tags=["live bases"], name="list_product_pool")
async def list_product_pool(session: Session, actor: Agency, page: Page, listed: Annotated[bool | None, Query()] = None):
    """选品管理: every product of the agency's actively bound shops, whether it qualifies and is listed."""
    return await lb.list_pool(session, actor, listed=listed, limit=page.limit, cursor=page.cursor)


@router.post("/v1/product-pool/{item_id}/list", response_model=PoolItemOut, tags=["live bases"], name="list_pool_item")
async def list_pool_item(item_id: str, session: Session, actor: Agency):
    """上架: show the product on the agency's bases' home pages (409 `not_qualified` if it does not qualify)."""
    return await lb.set_listed(session, actor, item_id, True)


@router.post("/v1/product-pool/{item_id}/unlist", response_model=PoolItemOut, tags=["live bases"], name="unlist_pool_item")
async def unlist_pool_item(item_id: str, session: Session, actor: Agency):
    """下架: take the product off the home pages."""
    return await lb.set_listed(session, actor, item_id, False)


# -- check-ins -------------------------------------------------------------------------------
@router.post(
    "/v1/check-ins", response_model=CheckInOut, status_code=status.HTTP_201_CREATED, tags=["live bases"], name="create_check_in"
)
@one_write
async def create_check_in(body: CheckInCreate, session: Session, actor: Creator):
    """The creator scanned a base's code: the check-in page, `pending_confirmation` with its
    eligibility, or `rejected` with the reasons."""
    return await lb.open_check_in(session, actor, body)


@router.get("/v1/check-ins", response_model=PageOut[CheckInOut], tags=["live bases"], name="list_check_ins")
async def list_check_ins(
    session: Session,
    actor: CurrentActor,
    page: Page,
    state: Annotated[CheckInState | None, Query()] = None,
    base_id: Annotated[str | None, Query(max_length=40)] = None,
):
    """达人合作: the caller's check-ins (a creator's own; an agency's at its bases)."""
    return await lb.list_check_ins(session, actor, state=state, base_id=base_id, limit=page.limit, cursor=page.cursor)


@router.get("/v1/check-ins/{check_in_id}", response_model=CheckInOut, tags=["live bases"], name="get_check_in")
async def get_check_in(check_in_id: str, session: Session, actor: CurrentActor):
    """One check-in with its eligibility and `allowed_actions`."""
    return await lb.get_check_in(session, actor, check_in_id)


@router.get(
    "/v1/check-ins/{check_in_id}/history",
    response_model=history_list(CHECK_IN),
    tags=["live bases"],
    name="get_check_in_history",
)
async def get_check_in_history(check_in_id: str, session: Session, actor: CurrentActor):
    """Every transition of the check-in."""
    return await lb.check_in_history(session, actor, check_in_id)


@router.post("/v1/check-ins/{check_in_id}/confirm", response_model=CheckInOut, tags=["live bases"], name="confirm_check_in")
async def confirm_check_in(check_in_id: str, session: Session, actor: CurrentActor):
    """The creator confirms: the rules are evaluated again; `checked_in` (starting a cooperation
    at a new base) or `rejected` with the reasons."""
    return await lb.confirm_check_in(session, actor, check_in_id)


@router.post("/v1/check-ins/{check_in_id}/check-out", response_model=CheckInOut, tags=["live bases"], name="check_out_check_in")
async def check_out_check_in(check_in_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The creator or the agency checks the creator out."""
    return await lb.check_out(session, actor, check_in_id, _reason(body))


# -- cooperations ----------------------------------------------------------------------------
@router.get("/v1/cooperations", response_model=PageOut[CooperationOut], tags=["live bases"], name="list_cooperations")
async def list_cooperations(
    session: Session, actor: CurrentActor, page: Page, state: Annotated[CooperationState | None, Query()] = None
):
    """The caller's cooperations (a creator's own; an agency's at its bases)."""
    return await lb.list_cooperations(session, actor, state=state, limit=page.limit, cursor=page.cursor)


@router.get("/v1/cooperations/{cooperation_id}", response_model=CooperationOut, tags=["live bases"], name="get_cooperation")
async def get_cooperation(cooperation_id: str, session: Session, actor: CurrentActor):
    """One cooperation with its `allowed_actions`."""
    return await lb.get_cooperation(session, actor, cooperation_id)


@router.get(
    "/v1/cooperations/{cooperation_id}/history",
    response_model=history_list(COOPERATION),
    tags=["live bases"],
    name="get_cooperation_history",
)
async def get_cooperation_history(cooperation_id: str, session: Session, actor: CurrentActor):
    """Every transition of the cooperation."""
    return await lb.cooperation_history(session, actor, cooperation_id)


@router.post(
    "/v1/cooperations/{cooperation_id}/terminate",
    response_model=CooperationOut,
    tags=["live bases"],
    name="terminate_cooperation",
)
async def terminate_cooperation(cooperation_id: str, session: Session, actor: CurrentActor, body: ReasonIn | None = None):
    """The creator or the agency ends the cooperation early (checking the creator out)."""
    return await lb.terminate_cooperation(session, actor, cooperation_id, _reason(body))
