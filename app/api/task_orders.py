"""Routes of the task orders module."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.deps import CurrentActor, Operator, Page, Session, link_or_roles, roles
from app.api.routing import TxRoute, one_write
from app.domain import accounts
from app.domain import task_orders as svc
from app.domain.accounts import CreatorCard, XingtuBindingIn, XingtuBindingOut
from app.domain.schemas import PageOut, history_list
from app.domain.task_orders import (
    CancelIn,
    CancelReasonOut,
    DisputeCreate,
    DisputeOut,
    DisputeResolve,
    TargetedPlanOut,
    TaskOrderCreate,
    TaskOrderOut,
    TaskOrderRejectIn,
)
from app.domain.task_orders.schemas import TaskOrderStatus, TaskOrderSubStatus
from app.state.core import Actor
from app.state.task_order import TASK_ORDER

router = APIRouter(route_class=TxRoute)
TAGS: list[str | Enum] = ["task orders"]
Merchant = Annotated[Actor, Depends(roles("merchant"))]
Creator = Annotated[Actor, Depends(roles("creator"))]
Party = Annotated[Actor, Depends(roles("merchant", "creator"))]


@router.post("/v1/xingtu-binding", response_model=XingtuBindingOut, tags=TAGS, name="bind_xingtu_account")
async def bind_xingtu(body: XingtuBindingIn, session: Session, actor: Merchant) -> XingtuBindingOut:
    """Bind the merchant's Xingtu account (星图账号): an existing one by `xingtu_account_id`, or
    register a new one when it is omitted. Needed before creating task orders."""
    return await accounts.bind_xingtu(session, actor, body)


@router.get("/v1/creators", response_model=PageOut[CreatorCard], tags=TAGS, name="list_creators")
async def list_creators(
    session: Session,
    _: CurrentActor,
    page: Page,
    accepting_orders: bool | None = None,
    q: Annotated[str | None, Query(max_length=100, description="nickname contains")] = None,
    level_min: Annotated[int | None, Query(ge=0, le=7)] = None,
) -> PageOut[CreatorCard]:
    """The creator square (达人广场): creators with their level, followers, whether they take
    orders (营业中) and their hourly quotes. Contact details are never shown here."""
    return await accounts.list_creators(
        session, accepting_orders=accepting_orders, q=q, level_min=level_min, limit=page.limit, cursor=page.cursor
    )


@router.post(
    "/v1/task-orders", response_model=TaskOrderOut, status_code=status.HTTP_201_CREATED, tags=TAGS, name="create_task_order"
)
@one_write
async def create_task_order(body: TaskOrderCreate, session: Session, actor: Merchant) -> TaskOrderOut:
    """Book a creator's live session. The amount (the creator's quote × `hours`) moves from the
    merchant's available balance to frozen in the same transaction; the creator is notified
    in-app and by SMS. 409 `xingtu_not_bound`, `creator_resting`, `insufficient_balance`."""
    return await svc.create_order(session, actor, body)


@router.get("/v1/task-orders", response_model=PageOut[TaskOrderOut], tags=TAGS, name="list_task_orders")
async def list_task_orders(
    session: Session,
    actor: CurrentActor,
    page: Page,
    status: Annotated[TaskOrderStatus | None, Query()] = None,
    sub_status: Annotated[TaskOrderSubStatus | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description="title or creator nickname contains")] = None,
    created_from: Annotated[datetime | None, Query()] = None,
    created_to: Annotated[datetime | None, Query(description="exclusive")] = None,
) -> PageOut[TaskOrderOut]:
    """Task orders, newest first: a merchant's own, a creator's (addressed to it), or all for an
    operator; filtered by the `status` tab, `sub_status`, `q` and the creation time."""
    return await svc.list_orders(
        session,
        actor,
        status=status,
        sub_status=sub_status,
        q=q,
        created_from=created_from,
        created_to=created_to,
        limit=page.limit,
        cursor=page.cursor,
    )


@router.get("/v1/task-orders/counts", response_model=dict[str, int], tags=TAGS, name="count_task_orders")
async def count_task_orders(session: Session, actor: CurrentActor) -> dict[str, int]:
    """The number of the caller's task orders in each `status` tab, and `all`."""
    return await svc.counts(session, actor)


@router.get(
    "/v1/task-orders/cancel-reasons", response_model=list[CancelReasonOut], tags=TAGS, name="list_task_order_cancel_reasons"
)
async def cancel_reasons(_: CurrentActor) -> list[CancelReasonOut]:
    """The published cancel reasons, and which party may use each."""
    return svc.CANCEL_REASONS


@router.get("/v1/task-orders/{order_id}", response_model=TaskOrderOut, tags=TAGS, name="get_task_order")
async def get_task_order(order_id: str, session: Session, actor: CurrentActor) -> TaskOrderOut:
    """One task order with its deadlines, compensation, linked live sessions (with the GMV of the
    order's products in each) and `watch` (room URL and QR code)."""
    return await svc.get_order(session, actor, order_id)


@router.get(
    "/v1/task-orders/{order_id}/history", response_model=history_list(TASK_ORDER), tags=TAGS, name="get_task_order_history"
)
async def task_order_history(order_id: str, session: Session, actor: CurrentActor):
    """Every transition of the order; timer- and signal-driven ones name the actor `system`."""
    return await svc.order_history(session, actor, order_id)


@router.post("/v1/task-orders/{order_id}/accept", response_model=TaskOrderOut, tags=TAGS, name="accept_task_order")
@one_write
async def accept(order_id: str, session: Session, actor: CurrentActor) -> TaskOrderOut:
    """The creator accepts; a targeted plan (定向计划) is created for each `targeted` product."""
    return await svc.accept(session, actor, order_id)


@router.post("/v1/task-orders/{order_id}/reject", response_model=TaskOrderOut, tags=TAGS, name="reject_task_order")
async def reject(order_id: str, session: Session, actor: CurrentActor, body: TaskOrderRejectIn | None = None) -> TaskOrderOut:
    """The creator declines; the hold is released to the merchant."""
    return await svc.reject(session, actor, order_id, body)


@router.post("/v1/task-orders/{order_id}/remind", response_model=TaskOrderOut, tags=TAGS, name="remind_task_order")
async def remind(order_id: str, session: Session, actor: CurrentActor) -> TaskOrderOut:
    """The merchant reminds the creator (in-app + SMS), once per calendar day (Asia/Shanghai);
    another one that day is 429 `rate_limited` with `Retry-After`."""
    return await svc.remind(session, actor, order_id)


@router.post("/v1/task-orders/{order_id}/approve", response_model=TaskOrderOut, tags=TAGS, name="approve_task_order")
async def approve(order_id: str, session: Session, actor: CurrentActor) -> TaskOrderOut:
    """验收: the merchant approves after the live session; the hold is paid to the creator."""
    return await svc.approve(session, actor, order_id)


@router.post("/v1/task-orders/{order_id}/cancel", response_model=TaskOrderOut, tags=TAGS, name="cancel_task_order")
async def cancel(order_id: str, body: CancelIn, session: Session, actor: CurrentActor) -> TaskOrderOut:
    """Cancel with a published `reason {code, note}`. By the merchant: compensation rules decide
    the creator's share (`compensation_fen`, `compensation_rule`). By the creator (after
    accepting): the hold goes back to the merchant in full."""
    return await svc.cancel(session, actor, order_id, body)


@router.post(
    "/v1/task-orders/{order_id}/disputes",
    response_model=DisputeOut,
    status_code=status.HTTP_201_CREATED,
    tags=TAGS,
    name="open_task_order_dispute",
)
async def open_dispute(order_id: str, body: DisputeCreate, session: Session, actor: Party) -> DisputeOut:
    """Either party opens a dispute (交易纠纷) on an order that ended in the last 30 days."""
    return await svc.open_dispute(session, actor, order_id, body)


@router.get("/v1/disputes/{dispute_id}", response_model=DisputeOut, tags=TAGS, name="get_dispute")
async def get_dispute(dispute_id: str, session: Session, actor: CurrentActor) -> DisputeOut:
    """One dispute (its parties and operators)."""
    return await svc.get_dispute(session, actor, dispute_id)


@router.post("/v1/disputes/{dispute_id}/resolve", response_model=DisputeOut, tags=TAGS, name="resolve_dispute")
async def resolve_dispute(dispute_id: str, body: DisputeResolve, session: Session, actor: Operator) -> DisputeOut:
    """The operator sets the creator's final share of the order's amount; the difference from
    what was already paid moves between the two wallets (409 `insufficient_balance` if the
    paying side cannot cover it)."""
    return await svc.resolve_dispute(session, actor, dispute_id, body)


@router.post("/v1/disputes/{dispute_id}/withdraw", response_model=DisputeOut, tags=TAGS, name="withdraw_dispute")
async def withdraw_dispute(dispute_id: str, session: Session, actor: CurrentActor) -> DisputeOut:
    """The party that opened the dispute withdraws it."""
    return await svc.withdraw_dispute(session, actor, dispute_id)


@router.get("/v1/targeted-plans", response_model=PageOut[TargetedPlanOut], tags=TAGS, name="list_targeted_plans")
async def list_targeted_plans(session: Session, actor: CurrentActor, page: Page) -> PageOut[TargetedPlanOut]:
    """Targeted plans (定向计划) created by accepted orders: the merchant's own, or the creator's."""
    return await svc.list_targeted_plans(session, actor, limit=page.limit, cursor=page.cursor)


@router.get(
    "/v1/live-sessions/{live_session_id}/qr.svg",
    tags=TAGS,
    name="get_live_session_qr",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def live_session_qr(live_session_id: str, session: Session, actor: Annotated[Actor, Depends(link_or_roles())]) -> Response:
    """The QR code (SVG) of a live session's room URL, for 观看直播: with a bearer token, or as
    the signed link `watch.qr_svg_url` of a task order (works in an `<img>`)."""
    return Response(await svc.live_session_qr(session, actor, live_session_id), media_type="image/svg+xml")
