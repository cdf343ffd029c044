"""The outreach module (精选联盟建联): conversations between accounts, creators' contact details,
and the weekly quotas that limit both.

- `schemas.py`: what the endpoints take and answer;
- `quotas.py`: the quota policy, this week's limits and their units;
- `conversations.py`: opening conversations, messages and read markers, contact views;

Every statement is in `app/db/repositories/outreach.py`; the demo step is
`app/demo/outreach.py`."""

from __future__ import annotations

from app.domain.outreach.conversations import (
    list_conversations,
    list_messages,
    open_conversation,
    post_message,
    view_contact,
)
from app.domain.outreach.quotas import (
    CONTACT_VIEWS,
    CONVERSATIONS,
    DEFAULT_POLICY,
    OPEN_PAIRS,
    ROLE_ITEMS,
    consume,
    ensure_quota,
    get_policy,
    last_week_gmv,
    my_quotas,
    next_week,
    policy_for_week,
    put_policy,
)
from app.domain.outreach.schemas import (
    ContactField,
    ContactViewIn,
    ContactViewOut,
    ConversationMessageIn,
    ConversationMessageOut,
    ConversationOpen,
    ConversationOut,
    ConversationPartyOut,
    QuotaBasis,
    QuotaCreatorTier,
    QuotaFixedLimits,
    QuotaItemOut,
    QuotaMerchantTier,
    QuotaPolicyIn,
    QuotaPolicyOut,
    QuotasOut,
    ScheduledQuotaPolicyOut,
)

__all__ = [
    "CONTACT_VIEWS",
    "CONVERSATIONS",
    "DEFAULT_POLICY",
    "OPEN_PAIRS",
    "ROLE_ITEMS",
    "ContactField",
    "ContactViewIn",
    "ContactViewOut",
    "ConversationMessageIn",
    "ConversationMessageOut",
    "ConversationOpen",
    "ConversationOut",
    "ConversationPartyOut",
    "QuotaBasis",
    "QuotaCreatorTier",
    "QuotaFixedLimits",
    "QuotaItemOut",
    "QuotaMerchantTier",
    "QuotaPolicyIn",
    "QuotaPolicyOut",
    "QuotasOut",
    "ScheduledQuotaPolicyOut",
    "consume",
    "ensure_quota",
    "get_policy",
    "last_week_gmv",
    "list_conversations",
    "list_messages",
    "my_quotas",
    "next_week",
    "open_conversation",
    "policy_for_week",
    "post_message",
    "put_policy",
    "view_contact",
]
