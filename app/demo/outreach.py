"""Demo data of the outreach module (listed in `app/modules.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.outreach import conversations
from app.domain.outreach.schemas import ConversationMessageIn, ConversationOpen
from app.state.core import Actor


async def demo_step(session: AsyncSession, accounts: dict[str, Any]) -> list[str]:
    """The demo merchant opens a conversation with the demo creator and says hello. Idempotent."""
    merchant, creator = accounts.get("merchant"), accounts.get("creator")
    if merchant is None or creator is None or await conversations._find_pair(session, merchant.id, creator.id):
        return []
    actor = Actor(merchant.id, "merchant")
    conversation, _ = await conversations.open_conversation(session, actor, ConversationOpen(counterpart_id=creator.id))
    await conversations.post_message(
        session, actor, conversation.id, ConversationMessageIn(text="你好!我们店的新品佣金 20%,想邀请你专场直播,方便聊聊吗?")
    )
    return ["  a conversation from the merchant to the creator (outreach quota: 1 unit used)"]
