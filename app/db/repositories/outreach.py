"""Statements of the outreach module: the accounts a conversation or a contact view concerns,
quota policies, weekly quota rows and their units, conversations with their members (read
markers, last activity) and messages. A conversation is seen by its two participants only: that
scoping is written here, once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed
from app.db.base import table_of
from app.db.bulk import FromGate, write_gated
from app.db.models.accounts import Account
from app.db.models.facts import SalesOrder
from app.db.models.outreach import Conversation, ConversationMember, ConversationMessage, OutreachQuota, QuotaPolicy
from app.db.pagination import decode_cursor, encode_cursor, key_after, page_of
from app.db.repositories._run import prepare_module, prepared, record_of, run, wrote_nothing
from app.db.repositories.gmv import gmv_sum
from app.db.repositories.pages import Page
from app.db.repositories.platform import CLOCK_OFFSET
from app.db.session import dialect_of

accounts = table_of(Account)
sales_orders = table_of(SalesOrder)
conversations = table_of(Conversation)
members = table_of(ConversationMember)
messages = table_of(ConversationMessage)
quotas = table_of(OutreachQuota)
policies = table_of(QuotaPolicy)


def _with_clock(statement: Select) -> dict[bool, Select]:
    """The statement without and with the test clock's offset as a column."""
    return {False: statement, True: statement.add_columns(CLOCK_OFFSET)}


def _by_dialect(build) -> dict[str, Any]:
    return {"postgresql": build(pg_insert), "sqlite": build(sqlite_insert)}


# =========================================================================== records
@dataclass(frozen=True, slots=True)
class OutreachParty:
    """An account as opening a conversation or viewing a contact reads it."""

    id: str
    role: str
    display_name: str
    alliance_member: bool | None
    level: int | None
    contact_phone: str | None
    contact_wechat: str | None


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    effective_week: datetime
    merchant_tiers: list[dict[str, Any]]
    creator_tiers: list[dict[str, Any]]
    fixed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    id: str
    account_id: str
    week_start: datetime
    kind: str
    counterpart_role: str
    quota_limit: int
    used: int
    basis_type: str
    basis_value: int | None
    policy_effective_week: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    account_low: str
    account_high: str
    opener_id: str
    message_count: int
    created_at: datetime
    last_message_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConversationView(ConversationRecord):
    """A conversation as one participant sees it: the other participant, the participant's
    last activity and its unread count (the other party's messages after its read marker)."""

    last_activity_at: datetime
    unread_count: int
    counterpart_id: str
    counterpart_role: str
    counterpart_display_name: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    text: str
    created_at: datetime


# =========================================================================== accounts
_PARTIES = _with_clock(
    select(
        accounts.c.id,
        accounts.c.role,
        accounts.c.display_name,
        accounts.c.alliance_member,
        accounts.c.level,
        accounts.c.contact_phone,
        accounts.c.contact_wechat,
    ).where(or_(accounts.c.id == bindparam("a"), accounts.c.id == bindparam("b")))
)


async def parties(
    session: AsyncSession, first_id: str, second_id: str, *, with_clock: bool = False
) -> tuple[dict[str, OutreachParty], int | None]:
    """Two accounts (or one, named twice) by id, and the test clock's offset when asked."""
    rows = (await run(session, _PARTIES[with_clock], {"a": first_id, "b": second_id})).all()
    offset = rows[0].clock_offset if with_clock and rows else None
    return {row.id: record_of(OutreachParty, row) for row in rows}, offset


# =========================================================================== policies
_POLICY_FOR_WEEK = (
    select(policies.c.effective_week, policies.c.merchant_tiers, policies.c.creator_tiers, policies.c.fixed)
    .where(policies.c.effective_week <= bindparam("week"))
    .order_by(policies.c.effective_week.desc())
    .limit(1)
)


def _put_policy(dialect_insert):
    statement = dialect_insert(policies).values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in policies.c})
    replaced = ("merchant_tiers", "creator_tiers", "fixed", "created_by", "created_at")
    return statement.on_conflict_do_update(index_elements=["effective_week"], set_={c: statement.excluded[c] for c in replaced})


_PUT_POLICY = _by_dialect(_put_policy)


async def policy_for_week(session: AsyncSession, week: datetime) -> PolicyRecord | None:
    """The latest policy effective on or before `week`."""
    row = (await run(session, _POLICY_FOR_WEEK, {"week": week})).first()
    return None if row is None else record_of(PolicyRecord, row)


async def put_policy(session: AsyncSession, values: dict[str, Any]) -> None:
    """The policy of `values["effective_week"]`, created or replaced (one upsert)."""
    await run(session, _PUT_POLICY[dialect_of(session).name], {f"v_{k}": v for k, v in values.items()})


_LAST_WEEK_GMV = select(gmv_sum()).where(
    sales_orders.c.shop_id == bindparam("shop"),
    sales_orders.c.paid_at >= bindparam("start"),
    sales_orders.c.paid_at < bindparam("end"),
)


async def shop_gmv(session: AsyncSession, shop_id: str, start: datetime, end: datetime) -> int:
    """GMV of the shop's orders paid in [start, end) (one aggregate)."""
    return int((await run(session, _LAST_WEEK_GMV, {"shop": shop_id, "start": start, "end": end})).scalar() or 0)


# =========================================================================== quotas
# (bind names other than the columns': the UPDATE sets one of them)
_QUOTA_KEY = (
    quotas.c.account_id == bindparam("q_account"),
    quotas.c.week_start == bindparam("q_week"),
    quotas.c.kind == bindparam("q_kind"),
    quotas.c.counterpart_role == bindparam("q_role"),
)
_QUOTA = select(quotas).where(*_QUOTA_KEY)
# the whole write of a contact view: a route that writes once runs it outside a transaction block
_USE_UNIT = prepared(
    update(quotas).where(*_QUOTA_KEY, quotas.c.used < quotas.c.quota_limit).values(used=quotas.c.used + 1).returning(*quotas.c),
    atomic=True,
)


def _insert_quota(dialect_insert):
    return (
        dialect_insert(quotas)
        .values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in quotas.c})
        .on_conflict_do_nothing(index_elements=["account_id", "week_start", "kind", "counterpart_role"])
    )


_INSERT_QUOTA = _by_dialect(_insert_quota)


def _key(account_id: str, week: datetime, kind: str, counterpart_role: str) -> dict[str, Any]:
    return {"q_account": account_id, "q_week": week, "q_kind": kind, "q_role": counterpart_role}


async def quota(session: AsyncSession, account_id: str, week: datetime, kind: str, counterpart_role: str) -> QuotaRecord | None:
    row = (await run(session, _QUOTA, _key(account_id, week, kind, counterpart_role))).first()
    return None if row is None else record_of(QuotaRecord, row)


async def insert_quota(session: AsyncSession, values: dict[str, Any]) -> None:
    """The week's quota row, unless a racing request wrote it first (then nothing happens)."""
    await run(session, _INSERT_QUOTA[dialect_of(session).name], {f"v_{k}": v for k, v in values.items()})


async def use_unit(
    session: AsyncSession, account_id: str, week: datetime, kind: str, counterpart_role: str
) -> QuotaRecord | None:
    """One unit of the quota, with one conditional statement (`… WHERE used < quota_limit`):
    the quota as it now stands, or None when there is no such row or no unit is left."""
    row = (await run(session, _USE_UNIT, _key(account_id, week, kind, counterpart_role))).first()
    if row is None:  # no row changed: the week's first use may still write its row, then the unit
        wrote_nothing(session)
        return None
    return record_of(QuotaRecord, row)


# =========================================================================== conversations
_UNREAD = (
    select(func.count())
    .select_from(messages)
    .where(
        messages.c.conversation_id == members.c.conversation_id,
        messages.c.seq > members.c.last_read_seq,
        messages.c.sender_id != members.c.account_id,
    )
    .correlate(members)
    .scalar_subquery()
    .label("unread_count")
)
_OTHER = case(
    (conversations.c.account_low == members.c.account_id, conversations.c.account_high), else_=conversations.c.account_low
)
_SEEN = (
    select(
        conversations,
        members.c.last_activity_at,
        _UNREAD,
        accounts.c.id.label("counterpart_id"),
        accounts.c.role.label("counterpart_role"),
        accounts.c.display_name.label("counterpart_display_name"),
    )
    .join(members, members.c.conversation_id == conversations.c.id)
    .join(accounts, accounts.c.id == _OTHER)
    .where(members.c.account_id == bindparam("me"))
)
"""The conversations of one participant (`me`): its member row is the scope."""

_VIEW = _SEEN.where(conversations.c.id == bindparam("id"))
_ORDER = (members.c.last_activity_at.desc(), members.c.conversation_id.desc())
_PAGES = {
    False: _SEEN.order_by(*_ORDER).limit(bindparam("limit", type_=Integer)),
    True: _SEEN.where(
        or_(
            members.c.last_activity_at < bindparam("at"),
            and_(members.c.last_activity_at == bindparam("at"), members.c.conversation_id < bindparam("after")),
        )
    )
    .order_by(*_ORDER)
    .limit(bindparam("limit", type_=Integer)),
}
_PAIR = select(conversations).where(
    conversations.c.account_low == bindparam("low"), conversations.c.account_high == bindparam("high")
)
_CONVERSATION = select(conversations).where(conversations.c.id == bindparam("id"))


def _insert_conversation(dialect_insert):
    return (
        dialect_insert(conversations)
        .values({c.key: bindparam(f"v_{c.key}", type_=c.type) for c in conversations.c})
        .on_conflict_do_nothing(index_elements=["account_low", "account_high"])
        .returning(conversations.c.id)
    )


_INSERT_CONVERSATION = _by_dialect(_insert_conversation)


async def conversation_of_pair(session: AsyncSession, low: str, high: str) -> ConversationRecord | None:
    """The conversation of the ordered pair (`low` < `high`)."""
    row = (await run(session, _PAIR, {"low": low, "high": high})).first()
    return None if row is None else record_of(ConversationRecord, row)


async def conversation(session: AsyncSession, conversation_id: str) -> ConversationRecord | None:
    row = (await run(session, _CONVERSATION, {"id": conversation_id})).first()
    return None if row is None else record_of(ConversationRecord, row)


async def conversation_seen_by(session: AsyncSession, conversation_id: str, me: str) -> ConversationView | None:
    row = (await run(session, _VIEW, {"id": conversation_id, "me": me})).first()
    return None if row is None else record_of(ConversationView, row)


async def insert_conversation(session: AsyncSession, values: dict[str, Any]) -> bool:
    """A new conversation (every column of `conversations`): False when the pair has one
    already — a racing request's insert waits for that one to commit, then writes nothing."""
    params = {f"v_{k}": v for k, v in values.items()}
    return (await run(session, _INSERT_CONVERSATION[dialect_of(session).name], params)).first() is not None


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    key = decode_cursor(cursor)
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
    try:
        at = datetime.fromisoformat(key[0])
    except ValueError:
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"]) from None
    if at.tzinfo is None:
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
    return at, key[1]


async def conversations_page(session: AsyncSession, me: str, *, limit: int, cursor: str | None) -> Page[ConversationView]:
    """The participant's conversations, latest activity first (keyset on the member's
    `(last_activity_at, conversation_id)`: one index range at any depth)."""
    after = _after(cursor)
    params: dict[str, Any] = {"me": me, "limit": limit + 1}
    if after is not None:
        params["at"], params["after"] = after
    rows = [record_of(ConversationView, row) for row in await run(session, _PAGES[after is not None], params)]
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor([rows[-1].last_activity_at.isoformat(), rows[-1].id]))


# =========================================================================== messages
_APPEND = (
    update(conversations)
    .where(
        conversations.c.id == bindparam("g_id"),
        or_(conversations.c.account_low == bindparam("g_me"), conversations.c.account_high == bindparam("g_me")),
    )
    .values(message_count=conversations.c.message_count + 1, last_message_at=bindparam("g_now"))
    .returning(conversations.c.message_count)
)
"""The next `seq` of a participant's conversation (nothing for anyone else); the message is
inserted behind it in the same statement (`write_gated`)."""
_TOUCH_MEMBERS = (
    update(members)
    .where(members.c.conversation_id == bindparam("b_id"))
    .values(
        last_activity_at=bindparam("b_now"),
        last_read_seq=case(
            (members.c.account_id == bindparam("b_me"), bindparam("b_seq", type_=Integer)), else_=members.c.last_read_seq
        ),
    )
)
_MARK_READ = (
    update(members)
    .where(
        members.c.conversation_id == bindparam("b_id"),
        members.c.account_id == bindparam("b_me"),
        members.c.last_read_seq < bindparam("b_latest", type_=Integer),
    )
    .values(last_read_seq=bindparam("b_latest", type_=Integer))
)


def _messages_page(after: bool) -> Select:
    query = select(messages).where(messages.c.conversation_id == bindparam("conversation"))
    if after:
        query = query.where(messages.c.id < bindparam("after"))
    return query.order_by(messages.c.id.desc()).limit(bindparam("limit", type_=Integer))


# newest first; one statement for the first page and one for the later ones
_MESSAGE_PAGES = {after: _messages_page(after) for after in (False, True)}


async def append_message(session: AsyncSession, message: dict[str, Any]) -> int | None:
    """Write `message` (id, conversation_id, sender_id, text, created_at) as the conversation's
    next one, if its sender takes part in it: its `seq`, or None (nothing written). Both sides
    see the activity; the sender has read up to its own message."""
    conversation_id, sender, now = message["conversation_id"], message["sender_id"], message["created_at"]
    moved = await write_gated(
        session,
        _APPEND,
        {"g_id": conversation_id, "g_me": sender, "g_now": now},
        (messages, [{**message, "seq": FromGate("message_count")}]),
    )
    if moved is None:
        return None
    seq = int(moved.message_count)
    await run(session, _TOUCH_MEMBERS, {"b_id": conversation_id, "b_now": now, "b_me": sender, "b_seq": seq})
    return seq


async def messages_page(session: AsyncSession, conversation_id: str, *, limit: int, cursor: str | None) -> Page[MessageRecord]:
    after = key_after(cursor, messages.c.id)
    params: dict[str, Any] = {"conversation": conversation_id, "limit": limit + 1}
    if after is not None:
        params["after"] = after
    rows = [record_of(MessageRecord, row) for row in await run(session, _MESSAGE_PAGES[after is not None], params)]
    items, next_cursor = page_of(rows, limit)
    return Page(items, next_cursor)


async def mark_read(session: AsyncSession, conversation_id: str, account_id: str, latest: int) -> None:
    """Move the participant's read marker up to `latest` (never back)."""
    await run(session, _MARK_READ, {"b_id": conversation_id, "b_me": account_id, "b_latest": latest})


prepare_module(globals())
