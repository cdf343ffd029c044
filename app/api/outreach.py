"""Routes of the outreach module (精选联盟建联): conversations, contact views, weekly quotas."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.api.deps import CurrentActor, Operator, Page, Session, roles
from app.api.routing import TxRoute, one_write
from app.domain import outreach
from app.domain.outreach import (
    ContactViewIn,
    ContactViewOut,
    ConversationMessageIn,
    ConversationMessageOut,
    ConversationOpen,
    ConversationOut,
    QuotaPolicyIn,
    QuotaPolicyOut,
    QuotasOut,
)
from app.domain.schemas import PageOut
from app.state.core import Actor

router = APIRouter(route_class=TxRoute)
Merchant = Annotated[Actor, Depends(roles("merchant"))]


@router.post(
    "/v1/conversations",
    response_model=ConversationOut,
    status_code=status.HTTP_201_CREATED,
    tags=["outreach"],
    name="open_conversation",
    responses={200: {"model": ConversationOut, "description": "the pair's existing conversation"}},
)
async def open_conversation(body: ConversationOpen, session: Session, actor: CurrentActor, response: Response):
    """Open a conversation with `counterpart_id` (在线沟通). If the pair already has one, whoever
    opened it, it is answered with 200 and nothing is counted; otherwise 201 and one unit of the
    opener's weekly conversation quota is used (429 `quota_exhausted` when none is left)."""
    conversation, created = await outreach.open_conversation(session, actor, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return conversation


@router.get("/v1/conversations", response_model=PageOut[ConversationOut], tags=["outreach"], name="list_conversations")
async def list_conversations(session: Session, actor: CurrentActor, page: Page):
    """The caller's conversations, latest activity first, each with its unread count."""
    return await outreach.list_conversations(session, actor, limit=page.limit, cursor=page.cursor)


@router.post(
    "/v1/conversations/{conversation_id}/messages",
    response_model=ConversationMessageOut,
    status_code=status.HTTP_201_CREATED,
    tags=["outreach"],
    name="post_conversation_message",
)
async def post_message(conversation_id: str, body: ConversationMessageIn, session: Session, actor: CurrentActor):
    """Send a message (1–2000 characters) in a conversation the caller takes part in."""
    return await outreach.post_message(session, actor, conversation_id, body)


@router.get(
    "/v1/conversations/{conversation_id}/messages",
    response_model=PageOut[ConversationMessageOut],
    tags=["outreach"],
    name="list_conversation_messages",
)
async def list_messages(conversation_id: str, session: Session, actor: CurrentActor, page: Page):
    """The conversation's messages, newest first; listing marks the conversation read."""
    return await outreach.list_messages(session, actor, conversation_id, limit=page.limit, cursor=page.cursor)


@router.post(
    "/v1/creators/{creator_id}/contact-views", response_model=ContactViewOut, tags=["outreach"], name="view_creator_contact"
)
@one_write
async def view_contact(creator_id: str, body: ContactViewIn, session: Session, actor: Merchant):
    """Reveal a creator's phone or WeChat to an alliance merchant; every view uses one unit of
    the weekly contact-view quota. A field the creator never filled is 404 `contact_not_provided`."""
    return await outreach.view_contact(session, actor, creator_id, body)


@router.get("/v1/quotas/me", response_model=QuotasOut, tags=["outreach"], name="get_my_quotas")
async def my_quotas(session: Session, actor: CurrentActor):
    """This natural week's outreach quotas of the caller, with the basis of each limit."""
    return await outreach.my_quotas(session, actor)


@router.get("/v1/admin/quota-policy", response_model=QuotaPolicyOut, tags=["admin"], name="get_quota_policy")
async def get_quota_policy(session: Session, _: Operator):
    """The quota policy in force this week, and the one scheduled from next Monday if any."""
    return await outreach.get_policy(session)


@router.put("/v1/admin/quota-policy", response_model=QuotaPolicyOut, tags=["admin"], name="put_quota_policy")
async def put_quota_policy(body: QuotaPolicyIn, session: Session, actor: Operator):
    """Replace the quota policy from next Monday 00:00 Asia/Shanghai (this week keeps its limits)."""
    return await outreach.put_policy(session, actor, body)
