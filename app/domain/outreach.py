"""Rules and services of the outreach module (精选联盟建联): conversations between accounts,
creators' contact details, and the weekly quotas that limit both."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.db.base import new_id
from app.db.models.accounts import Account
from app.db.models.facts import SalesOrder
from app.db.models.outreach import Conversation, ConversationMember, ConversationMessage, OutreachQuota, QuotaPolicy
from app.db.pagination import decode_cursor, encode_cursor, keyset_page
from app.domain import clock
from app.domain.errors import Forbidden, NotFound, QuotaExhausted, ValidationFailed
from app.domain.gmv import gmv_sum
from app.domain.notifications import notify
from app.domain.schemas import Strict
from app.state.core import Actor

CONVERSATIONS = "conversations"
CONTACT_VIEWS = "contact_views"

# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------

_LIMIT = Field(ge=0, le=1_000_000)


class QuotaMerchantTier(Strict):
    min_last_week_gmv_fen: int = Field(ge=0, le=10**15)
    conversations: int = _LIMIT
    contact_views: int = _LIMIT


class QuotaCreatorTier(Strict):
    min_level: int = Field(ge=0, le=7)
    conversations: int = _LIMIT


class QuotaFixedLimits(Strict):
    agency_to_creator: int = _LIMIT
    group_leader_to_creator: int = _LIMIT
    group_leader_to_merchant: int = _LIMIT


def _ascending(tiers: list[Any], key: str, loc: str) -> None:
    values = [getattr(t, key) for t in tiers]
    if values[0] != 0:
        raise ValueError(f"{loc}[0].{key} must be 0 (the first tier starts at 0)")
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ValueError(f"{loc} must be in strictly ascending order of {key}")


class QuotaPolicyIn(Strict):
    """The weekly limits: merchant tiers by last week's GMV, creator tiers by level, and the
    fixed limits of agencies and group leaders. Tiers ascend; the first starts at 0."""

    merchant_tiers: list[QuotaMerchantTier] = Field(min_length=1, max_length=20)
    creator_tiers: list[QuotaCreatorTier] = Field(min_length=1, max_length=8)
    fixed: QuotaFixedLimits

    @model_validator(mode="after")
    def _tiers_ascend(self) -> QuotaPolicyIn:
        _ascending(self.merchant_tiers, "min_last_week_gmv_fen", "merchant_tiers")
        _ascending(self.creator_tiers, "min_level", "creator_tiers")
        return self


class ScheduledQuotaPolicyOut(QuotaPolicyIn):
    model_config = {"extra": "ignore"}
    effective_from: datetime | None = Field(description="Monday 00:00 Asia/Shanghai from which it applies "
                                                        "(null: the built-in defaults)")


class QuotaPolicyOut(ScheduledQuotaPolicyOut):
    """The policy in force this week, and the one scheduled from next week if it differs."""

    scheduled: ScheduledQuotaPolicyOut | None = None


DEFAULT_POLICY = QuotaPolicyIn(
    merchant_tiers=[
        QuotaMerchantTier(min_last_week_gmv_fen=0, conversations=20, contact_views=10),
        QuotaMerchantTier(min_last_week_gmv_fen=1_000_000, conversations=50, contact_views=30),
        QuotaMerchantTier(min_last_week_gmv_fen=10_000_000, conversations=100, contact_views=60),
        QuotaMerchantTier(min_last_week_gmv_fen=100_000_000, conversations=200, contact_views=100),
    ],
    creator_tiers=[
        QuotaCreatorTier(min_level=0, conversations=20),
        QuotaCreatorTier(min_level=2, conversations=50),
        QuotaCreatorTier(min_level=4, conversations=100),
        QuotaCreatorTier(min_level=6, conversations=200),
    ],
    fixed=QuotaFixedLimits(agency_to_creator=200, group_leader_to_creator=500, group_leader_to_merchant=500),
)


def _policy_of(row: QuotaPolicy | None) -> tuple[QuotaPolicyIn, datetime | None]:
    if row is None:
        return DEFAULT_POLICY, None
    return QuotaPolicyIn(merchant_tiers=row.merchant_tiers, creator_tiers=row.creator_tiers,
                         fixed=row.fixed), row.effective_week


async def policy_for_week(session: AsyncSession, week: datetime) -> tuple[QuotaPolicyIn, datetime | None]:
    """The latest policy effective on or before `week` (the defaults if none)."""
    row = await session.scalar(select(QuotaPolicy).where(QuotaPolicy.effective_week <= week)
                               .order_by(QuotaPolicy.effective_week.desc()).limit(1))
    return _policy_of(row)


def next_week(week: datetime) -> datetime:
    """The Monday 00:00 Asia/Shanghai after the week starting at `week`."""
    return clock.local_midnight(clock.local_date(week) + timedelta(days=7))


async def get_policy(session: AsyncSession) -> QuotaPolicyOut:
    week = clock.week_start(await clock.now(session))
    current, effective = await policy_for_week(session, week)
    upcoming, upcoming_from = await policy_for_week(session, next_week(week))
    scheduled = None
    if upcoming_from is not None and upcoming_from > week:
        scheduled = ScheduledQuotaPolicyOut(**upcoming.model_dump(), effective_from=upcoming_from)
    return QuotaPolicyOut(**current.model_dump(), effective_from=effective, scheduled=scheduled)


async def put_policy(session: AsyncSession, actor: Actor, body: QuotaPolicyIn) -> QuotaPolicyOut:
    """Schedule `body` from next Monday 00:00 (a second change in the same week replaces it)."""
    now = await clock.now(session)
    effective = next_week(clock.week_start(now))
    row = await session.scalar(select(QuotaPolicy).where(QuotaPolicy.effective_week == effective)
                               .with_for_update())
    data = body.model_dump()
    if row is None:
        row = QuotaPolicy(effective_week=effective, created_by=actor.id, created_at=now, **data)
        session.add(row)
    else:
        row.merchant_tiers, row.creator_tiers, row.fixed = data["merchant_tiers"], data["creator_tiers"], data["fixed"]
        row.created_by, row.created_at = actor.id, now
    await session.flush()
    return await get_policy(session)


# ---------------------------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------------------------

# (opener role, counterpart role) -> quota kinds; anything else is `pair_not_open`.
OPEN_PAIRS = {("merchant", "creator"), ("creator", "merchant"), ("agency", "creator"),
              ("group_leader", "creator"), ("group_leader", "merchant")}
# The quota items each role has (for GET /v1/quotas/me).
ROLE_ITEMS: dict[str, list[tuple[str, str]]] = {
    "merchant": [(CONVERSATIONS, "creator"), (CONTACT_VIEWS, "creator")],
    "creator": [(CONVERSATIONS, "merchant")],
    "agency": [(CONVERSATIONS, "creator")],
    "group_leader": [(CONVERSATIONS, "creator"), (CONVERSATIONS, "merchant")],
}


class QuotaBasis(BaseModel):
    type: Literal["last_week_gmv", "level", "fixed"]
    last_week_gmv_fen: int | None = None
    level: int | None = None
    policy_effective_from: datetime | None = None


class QuotaItemOut(BaseModel):
    kind: Literal["conversations", "contact_views"]
    counterpart_role: str
    limit: int
    used: int
    remaining: int
    basis: QuotaBasis


class QuotasOut(BaseModel):
    week_start: datetime
    resets_at: datetime
    items: list[QuotaItemOut]


async def last_week_gmv(session: AsyncSession, shop_id: str, week: datetime) -> int:
    """Paid minus refunded `amount_fen` of the shop's orders paid in the natural week before `week`."""
    start = clock.local_midnight(clock.local_date(week) - timedelta(days=7))
    total = await session.scalar(select(gmv_sum()).where(
        SalesOrder.shop_id == shop_id, SalesOrder.paid_at >= start, SalesOrder.paid_at < week))
    return int(total or 0)


async def _snapshot(session: AsyncSession, account: Account, kind: str, counterpart_role: str,
                    week: datetime) -> tuple[int, str, int | None, datetime | None]:
    """The limit this account gets this week: (limit, basis type, basis value, policy week)."""
    policy, effective = await policy_for_week(session, week)
    if account.role == "merchant":
        gmv = await last_week_gmv(session, account.id, week)
        tier = policy.merchant_tiers[0]
        for candidate in policy.merchant_tiers:
            if gmv >= candidate.min_last_week_gmv_fen:
                tier = candidate
        limit = tier.conversations if kind == CONVERSATIONS else tier.contact_views
        return limit, "last_week_gmv", gmv, effective
    if account.role == "creator":
        level = account.level or 0
        ctier = policy.creator_tiers[0]
        for candidate_c in policy.creator_tiers:
            if level >= candidate_c.min_level:
                ctier = candidate_c
        return ctier.conversations, "level", level, effective
    fixed = policy.fixed.model_dump()[f"{account.role}_to_{counterpart_role}"]
    return fixed, "fixed", None, effective


async def ensure_quota(session: AsyncSession, account: Account, kind: str, counterpart_role: str,
                       week: datetime) -> OutreachQuota:
    """This week's quota row, created with the limit snapshot on first use (race-safe)."""
    query = select(OutreachQuota).where(
        OutreachQuota.account_id == account.id, OutreachQuota.week_start == week,
        OutreachQuota.kind == kind, OutreachQuota.counterpart_role == counterpart_role)
    row = await session.scalar(query)
    if row is not None:
        return row
    limit, basis_type, basis_value, effective = await _snapshot(session, account, kind, counterpart_role, week)
    dialect = session.bind.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(insert(OutreachQuota).values(
        id=new_id("oqt"), account_id=account.id, week_start=week, kind=kind, counterpart_role=counterpart_role,
        quota_limit=limit, used=0, basis_type=basis_type, basis_value=basis_value,
        policy_effective_week=effective, created_at=await clock.now(session),
    ).on_conflict_do_nothing(index_elements=["account_id", "week_start", "kind", "counterpart_role"]))
    return (await session.execute(query.execution_options(populate_existing=True))).scalar_one()


def _exhausted(row: OutreachQuota, now: datetime) -> QuotaExhausted:
    resets_at = next_week(row.week_start)
    return QuotaExhausted(
        f"this week's {row.kind.replace('_', ' ')} quota towards {row.counterpart_role}s is used up "
        f"({row.quota_limit}); it resets at {resets_at.isoformat()}",
        retry_after=math.ceil((resets_at - now).total_seconds()),
        kind=row.kind, counterpart_role=row.counterpart_role, limit=row.quota_limit,
        resets_at=resets_at.isoformat())


async def consume(session: AsyncSession, row: OutreachQuota, now: datetime) -> None:
    """Use one unit with one conditional statement; 429 `quota_exhausted` if none is left."""
    result = await session.execute(
        update(OutreachQuota).where(OutreachQuota.id == row.id, OutreachQuota.used < OutreachQuota.quota_limit)
        .values(used=OutreachQuota.used + 1).returning(OutreachQuota.used)
        .execution_options(synchronize_session=False))
    used = result.scalar_one_or_none()
    if used is None:
        raise _exhausted(row, now)
    set_committed_value(row, "used", used)  # the database already holds it: no second write


def _item(row: OutreachQuota) -> QuotaItemOut:
    return QuotaItemOut(
        kind=row.kind, counterpart_role=row.counterpart_role, limit=row.quota_limit, used=row.used,
        remaining=max(0, row.quota_limit - row.used),
        basis=QuotaBasis(type=row.basis_type,
                         last_week_gmv_fen=row.basis_value if row.basis_type == "last_week_gmv" else None,
                         level=row.basis_value if row.basis_type == "level" else None,
                         policy_effective_from=row.policy_effective_week))


async def my_quotas(session: AsyncSession, actor: Actor) -> QuotasOut:
    """This week's quotas of the caller. Looking fixes the week's limits like a first use does."""
    now = await clock.now(session)
    week = clock.week_start(now)
    account = await session.get(Account, actor.id)
    if account is None:
        raise NotFound("no such account")
    items = []
    for kind, counterpart_role in ROLE_ITEMS.get(account.role, []):
        row = await ensure_quota(session, account, kind, counterpart_role, week)
        items.append(_item(row))
    return QuotasOut(week_start=week, resets_at=next_week(week), items=items)


# ---------------------------------------------------------------------------------------------
# Conversations
# ---------------------------------------------------------------------------------------------


class ConversationOpen(Strict):
    counterpart_id: str = Field(min_length=1, max_length=40)


class ConversationMessageIn(Strict):
    text: str = Field(min_length=1, max_length=2000)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class ConversationPartyOut(BaseModel):
    id: str
    role: str
    display_name: str


class ConversationMessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int
    sender_id: str
    text: str
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    opener_id: str
    participant_ids: list[str]
    counterpart: ConversationPartyOut = Field(description="the other participant, seen from the caller")
    created_at: datetime
    last_activity_at: datetime
    last_message_at: datetime | None
    message_count: int
    unread_count: int


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


async def _conversation_out(session: AsyncSession, conv: Conversation, me: str, *,
                            new: bool = False) -> ConversationOut:
    other_id = conv.account_high if conv.account_low == me else conv.account_low
    other = await session.get(Account, other_id)
    member = await session.get(ConversationMember, (conv.id, me))
    unread = 0 if new else await _unread(session, conv.id, me, member.last_read_seq if member else 0)
    return ConversationOut(
        id=conv.id, opener_id=conv.opener_id, participant_ids=[conv.account_low, conv.account_high],
        counterpart=ConversationPartyOut(id=other.id, role=other.role, display_name=other.display_name),
        created_at=conv.created_at, last_activity_at=member.last_activity_at if member else conv.created_at,
        last_message_at=conv.last_message_at, message_count=conv.message_count, unread_count=unread)


async def _unread(session: AsyncSession, conversation_id: str, me: str, last_read: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(ConversationMessage).where(
        ConversationMessage.conversation_id == conversation_id, ConversationMessage.seq > last_read,
        ConversationMessage.sender_id != me)) or 0)


async def _find_pair(session: AsyncSession, a: str, b: str) -> Conversation | None:
    low, high = _pair(a, b)
    return await session.scalar(select(Conversation).where(Conversation.account_low == low,
                                                          Conversation.account_high == high))


async def _actor_account(session: AsyncSession, actor: Actor) -> Account:
    account = await session.get(Account, actor.id)
    if account is None:
        raise NotFound("no such account")
    return account


def _require_alliance(account: Account) -> None:
    if not account.alliance_member:
        raise Forbidden("join the alliance (精选联盟) first", code="alliance_membership_required")


async def open_conversation(session: AsyncSession, actor: Actor,
                            body: ConversationOpen) -> tuple[ConversationOut, bool]:
    """The pair's conversation (created=False, nothing counted) or a new one (created=True,
    one unit of the opener's weekly quota)."""
    me = await _actor_account(session, actor)
    other = await session.get(Account, body.counterpart_id)
    if other is None:
        raise NotFound("no such account")
    if other.id != me.id:
        existing = await _find_pair(session, me.id, other.id)
        if existing is not None:
            return await _conversation_out(session, existing, me.id), False
    if (me.role, other.role) not in OPEN_PAIRS or other.id == me.id:
        raise Forbidden(f"{me.role}s cannot open conversations with {other.role}s here; ask support",
                        code="pair_not_open")
    if me.role == "merchant":
        _require_alliance(me)
    now = await clock.now(session)
    week = clock.week_start(now)
    quota = await ensure_quota(session, me, CONVERSATIONS, other.role, week)
    if quota.used >= quota.quota_limit:
        raise _exhausted(quota, now)
    low, high = _pair(me.id, other.id)
    conv = Conversation(account_low=low, account_high=high, opener_id=me.id, message_count=0, created_at=now)
    try:
        async with session.begin_nested():
            session.add(conv)
            await session.flush()
    except IntegrityError:
        # Another request opened this pair at the same moment: answer its conversation.
        existing = await _find_pair(session, me.id, other.id)
        if existing is None:  # pragma: no cover - the unique violation names an existing row
            raise
        return await _conversation_out(session, existing, me.id), False
    session.add_all([ConversationMember(conversation_id=conv.id, account_id=me.id, last_read_seq=0,
                                        last_activity_at=now),
                     ConversationMember(conversation_id=conv.id, account_id=other.id, last_read_seq=0,
                                        last_activity_at=now)])
    await consume(session, quota, now)
    await notify(session, other.id, "outreach.conversation_opened", "新的建联会话",
                 f"{me.display_name} opened a conversation with you",
                 {"conversation_id": conv.id, "opener_id": me.id, "opener_role": me.role})
    await session.flush()
    return await _conversation_out(session, conv, me.id, new=True), True


async def _visible(session: AsyncSession, actor: Actor, conversation_id: str) -> Conversation:
    conv = await session.get(Conversation, conversation_id)
    if conv is None or actor.id not in (conv.account_low, conv.account_high):
        raise NotFound("no such conversation")
    return conv


async def list_conversations(session: AsyncSession, actor: Actor, *, limit: int,
                             cursor: str | None) -> tuple[list[ConversationOut], str | None]:
    """The caller's conversations, latest activity first."""
    unread = (select(func.count()).select_from(ConversationMessage).where(
        ConversationMessage.conversation_id == ConversationMember.conversation_id,
        ConversationMessage.seq > ConversationMember.last_read_seq,
        ConversationMessage.sender_id != actor.id).correlate(ConversationMember).scalar_subquery())
    query = (select(Conversation, ConversationMember.last_activity_at, unread, Account)
             .join(ConversationMember, ConversationMember.conversation_id == Conversation.id)
             .join(Account, Account.id == case((Conversation.account_low == actor.id, Conversation.account_high),
                                               else_=Conversation.account_low))
             .where(ConversationMember.account_id == actor.id))
    if cursor:
        key = decode_cursor(cursor)
        if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
        try:
            at = datetime.fromisoformat(key[0])
        except ValueError:
            raise ValidationFailed("malformed cursor", loc=["query", "cursor"]) from None
        if at.tzinfo is None:
            raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
        query = query.where(or_(ConversationMember.last_activity_at < at,
                                and_(ConversationMember.last_activity_at == at,
                                     ConversationMember.conversation_id < key[1])))
    query = query.order_by(ConversationMember.last_activity_at.desc(),
                           ConversationMember.conversation_id.desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([last[1].isoformat(), last[0].id])
    items = [ConversationOut(
        id=conv.id, opener_id=conv.opener_id, participant_ids=[conv.account_low, conv.account_high],
        counterpart=ConversationPartyOut(id=other.id, role=other.role, display_name=other.display_name),
        created_at=conv.created_at, last_activity_at=activity, last_message_at=conv.last_message_at,
        message_count=conv.message_count, unread_count=int(count or 0))
        for conv, activity, count, other in rows]
    return items, next_cursor


async def post_message(session: AsyncSession, actor: Actor, conversation_id: str,
                       body: ConversationMessageIn) -> ConversationMessageOut:
    conv = await _visible(session, actor, conversation_id)
    now = await clock.now(session)
    seq = (await session.execute(
        update(Conversation).where(Conversation.id == conv.id)
        .values(message_count=Conversation.message_count + 1, last_message_at=now)
        .returning(Conversation.message_count).execution_options(synchronize_session=False))).scalar_one()
    message = ConversationMessage(conversation_id=conv.id, seq=seq, sender_id=actor.id, text=body.text,
                                  created_at=now)
    session.add(message)
    # Both sides see the activity; the writer has read the conversation up to its own message.
    await session.execute(update(ConversationMember).where(ConversationMember.conversation_id == conv.id).values(
        last_activity_at=now,
        last_read_seq=case((ConversationMember.account_id == actor.id, seq),
                           else_=ConversationMember.last_read_seq),
    ).execution_options(synchronize_session=False))
    await session.flush()
    return ConversationMessageOut.model_validate(message, from_attributes=True)


async def list_messages(session: AsyncSession, actor: Actor, conversation_id: str, *, limit: int,
                        cursor: str | None) -> tuple[list[ConversationMessageOut], str | None]:
    """Newest first; listing marks the whole conversation read for the caller."""
    conv = await _visible(session, actor, conversation_id)
    rows, next_cursor = await keyset_page(
        session, select(ConversationMessage).where(ConversationMessage.conversation_id == conv.id),
        ConversationMessage.id, limit=limit, cursor=cursor)
    latest = conv.message_count
    await session.execute(update(ConversationMember).where(
        ConversationMember.conversation_id == conv.id, ConversationMember.account_id == actor.id,
        ConversationMember.last_read_seq < latest).values(last_read_seq=latest)
        .execution_options(synchronize_session=False))
    return [ConversationMessageOut.model_validate(r, from_attributes=True) for r in rows], next_cursor


# ---------------------------------------------------------------------------------------------
# Contact views
# ---------------------------------------------------------------------------------------------


class ContactField(StrEnum):
    phone = "phone"
    wechat = "wechat"


class ContactViewIn(Strict):
    field: ContactField


class ContactViewOut(BaseModel):
    field: ContactField
    value: str


async def view_contact(session: AsyncSession, actor: Actor, creator_id: str, body: ContactViewIn) -> ContactViewOut:
    """Reveal one contact field of a creator, counting one unit of the merchant's weekly quota."""
    me = await _actor_account(session, actor)
    _require_alliance(me)
    creator = await session.get(Account, creator_id)
    if creator is None or creator.role != "creator":
        raise NotFound("no such creator")
    value = creator.contact_phone if body.field is ContactField.phone else creator.contact_wechat
    if not value:
        raise NotFound(f"this creator has not provided a {body.field.value}", code="contact_not_provided")
    now = await clock.now(session)
    quota = await ensure_quota(session, me, CONTACT_VIEWS, "creator", clock.week_start(now))
    await consume(session, quota, now)
    return ContactViewOut(field=body.field, value=value)


# ---------------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------------


async def demo_step(session: AsyncSession, accounts: dict[str, Account]) -> list[str]:
    """The demo merchant opens a conversation with the demo creator and says hello. Idempotent."""
    merchant, creator = accounts.get("merchant"), accounts.get("creator")
    if merchant is None or creator is None or await _find_pair(session, merchant.id, creator.id):
        return []
    actor = Actor(merchant.id, "merchant")
    conversation, _ = await open_conversation(session, actor, ConversationOpen(counterpart_id=creator.id))
    await post_message(session, actor, conversation.id, ConversationMessageIn(
        text="你好!我们店的新品佣金 20%,想邀请你专场直播,方便聊聊吗?"))
    return ["  a conversation from the merchant to the creator (outreach quota: 1 unit used)"]


def _register_demo() -> None:
    from app.demo import DEMO_STEPS

    if demo_step not in DEMO_STEPS:
        DEMO_STEPS.append(demo_step)


_register_demo()
