"""Conversations (在线沟通) and contact views of outreach: who may open a conversation with
whom, messages and read markers, and revealing a creator's contact, each counted against the
weekly quotas (`quotas.py`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Forbidden, NotFound
from app.core.i18n import msg, term
from app.db.base import id_for
from app.db.bulk import insert_together
from app.db.models.outreach import Conversation, ConversationMessage
from app.db.repositories import outreach as repo
from app.db.repositories.outreach import ConversationRecord, ConversationView, OutreachParty
from app.domain.notifications import message_rows
from app.domain.outreach.quotas import CONTACT_VIEWS, CONVERSATIONS, OPEN_PAIRS, consume, ensure_quota, exhausted
from app.domain.outreach.schemas import (
    ContactField,
    ContactViewIn,
    ContactViewOut,
    ConversationMessageIn,
    ConversationMessageOut,
    ConversationOpen,
    ConversationOut,
    ConversationPartyOut,
)
from app.domain.schemas import PageOut
from app.state import clock
from app.state.core import Actor


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _out(view: ConversationView) -> ConversationOut:
    return ConversationOut(
        id=view.id,
        opener_id=view.opener_id,
        participant_ids=[view.account_low, view.account_high],
        counterpart=ConversationPartyOut(
            id=view.counterpart_id, role=view.counterpart_role, display_name=view.counterpart_display_name
        ),
        created_at=view.created_at,
        last_activity_at=view.last_activity_at,
        last_message_at=view.last_message_at,
        message_count=view.message_count,
        unread_count=int(view.unread_count or 0),
    )


async def _seen_by(session: AsyncSession, conversation_id: str, me: str) -> ConversationOut:
    view = await repo.conversation_seen_by(session, conversation_id, me)
    if view is None:  # pragma: no cover - the caller holds the conversation's id and is a participant
        raise NotFound("no such conversation")
    return _out(view)


async def _find_pair(session: AsyncSession, a: str, b: str) -> ConversationRecord | None:
    low, high = _pair(a, b)
    return await repo.conversation_of_pair(session, low, high)


async def _accounts(session: AsyncSession, actor: Actor, other_id: str) -> tuple[OutreachParty, OutreachParty | None]:
    """The caller's account and the other one (None if there is no such account), with the
    test clock's offset in the same statement."""
    found, offset = await repo.parties(session, actor.id, other_id, with_clock=clock.carries_offset())
    me = found.get(actor.id)
    if me is None:
        raise NotFound("no such account")
    clock.remember(session, offset)
    return me, found.get(other_id)


def _require_alliance(account: OutreachParty) -> None:
    if not account.alliance_member:
        raise Forbidden("join the alliance (精选联盟) first", code="alliance_membership_required")


async def open_conversation(session: AsyncSession, actor: Actor, body: ConversationOpen) -> tuple[ConversationOut, bool]:
    """The pair's conversation (created=False, nothing counted) or a new one (created=True,
    one unit of the opener's weekly quota)."""
    me, other = await _accounts(session, actor, body.counterpart_id)
    if other is None:
        raise NotFound("no such account")
    if other.id != me.id:
        existing = await _find_pair(session, me.id, other.id)
        if existing is not None:
            return await _seen_by(session, existing.id, me.id), False
    if (me.role, other.role) not in OPEN_PAIRS or other.id == me.id:
        raise Forbidden(
            msg(
                "a {role} cannot open conversations with a {other_role} here; ask support",
                role=term(me.role),
                other_role=term(other.role),
            ),
            code="pair_not_open",
        )
    if me.role == "merchant":
        _require_alliance(me)
    now = await clock.now(session)
    quota = await ensure_quota(session, me, CONVERSATIONS, other.role, clock.week_start(now))
    if quota.used >= quota.quota_limit:  # refused early; the conditional update below is the guarantee
        raise exhausted(quota, now)
    low, high = _pair(me.id, other.id)
    conversation_id = id_for(Conversation)
    if not await repo.insert_conversation(
        session,
        {
            "id": conversation_id,
            "account_low": low,
            "account_high": high,
            "opener_id": me.id,
            "message_count": 0,
            "created_at": now,
            "last_message_at": None,
        },
    ):
        # another request opened this pair at the same moment: answer its conversation
        existing = await _find_pair(session, me.id, other.id)
        if existing is None:  # pragma: no cover - the conflict names a committed row
            raise NotFound("no such conversation")
        return await _seen_by(session, existing.id, me.id), False
    await consume(session, me, CONVERSATIONS, other.role, now)  # 429: the whole transaction rolls back
    await insert_together(
        session,
        (
            repo.members,
            [
                {"conversation_id": conversation_id, "account_id": account_id, "last_read_seq": 0, "last_activity_at": now}
                for account_id in (me.id, other.id)
            ],
        ),
        *message_rows(
            other.id,
            "outreach.conversation_opened",
            "新的建联会话",
            f"{me.display_name} opened a conversation with you",
            {"conversation_id": conversation_id, "opener_id": me.id, "opener_role": me.role},
            now,
        ),
    )
    return ConversationOut(
        id=conversation_id,
        opener_id=me.id,
        participant_ids=[low, high],
        counterpart=ConversationPartyOut(id=other.id, role=other.role, display_name=other.display_name),
        created_at=now,
        last_activity_at=now,
        last_message_at=None,
        message_count=0,
        unread_count=0,
    ), True


async def list_conversations(session: AsyncSession, actor: Actor, *, limit: int, cursor: str | None) -> PageOut[ConversationOut]:
    """The caller's conversations, latest activity first."""
    page = await repo.conversations_page(session, actor.id, limit=limit, cursor=cursor)
    return PageOut[ConversationOut](items=[_out(v) for v in page.items], next_cursor=page.next_cursor)


async def post_message(
    session: AsyncSession, actor: Actor, conversation_id: str, body: ConversationMessageIn
) -> ConversationMessageOut:
    """The message takes the conversation's next `seq`; one statement checks that the caller
    takes part, counts the message and writes it."""
    now = await clock.now(session)
    message = {
        "id": id_for(ConversationMessage),
        "conversation_id": conversation_id,
        "sender_id": actor.id,
        "text": body.text,
        "created_at": now,
    }
    seq = await repo.append_message(session, message)
    if seq is None:
        raise NotFound("no such conversation")
    return ConversationMessageOut(**message, seq=seq)


async def list_messages(
    session: AsyncSession, actor: Actor, conversation_id: str, *, limit: int, cursor: str | None
) -> PageOut[ConversationMessageOut]:
    """Newest first; listing marks the whole conversation read for the caller."""
    conversation = await repo.conversation(session, conversation_id)
    if conversation is None or actor.id not in (conversation.account_low, conversation.account_high):
        raise NotFound("no such conversation")
    page = await repo.messages_page(session, conversation.id, limit=limit, cursor=cursor)
    await repo.mark_read(session, conversation.id, actor.id, conversation.message_count)
    return PageOut[ConversationMessageOut](
        items=[ConversationMessageOut.model_validate(m, from_attributes=True) for m in page.items], next_cursor=page.next_cursor
    )


async def view_contact(session: AsyncSession, actor: Actor, creator_id: str, body: ContactViewIn) -> ContactViewOut:
    """Reveal one contact field of a creator, counting one unit of the merchant's weekly quota."""
    me, creator = await _accounts(session, actor, creator_id)
    _require_alliance(me)
    if creator is None or creator.role != "creator":
        raise NotFound("no such creator")
    value = creator.contact_phone if body.field is ContactField.phone else creator.contact_wechat
    if not value:
        raise NotFound(msg("this creator has not provided a {field}", field=term(body.field.value)), code="contact_not_provided")
    await consume(session, me, CONTACT_VIEWS, "creator", await clock.now(session))
    return ContactViewOut(field=body.field, value=value)
