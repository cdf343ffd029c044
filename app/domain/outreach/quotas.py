"""The quota policy and the weekly quotas of outreach: each account's limit is fixed when it
first uses or looks at a quota in the natural week (Monday 00:00 Asia/Shanghai), and a unit is
used by one conditional statement, so the limit holds under any concurrency."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, QuotaExhausted
from app.core.i18n import msg, term
from app.core.times import iso_z
from app.db.base import new_id
from app.db.repositories import outreach as repo
from app.db.repositories.outreach import OutreachParty, QuotaRecord
from app.domain.outreach.schemas import (
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
from app.state import clock
from app.state.core import Actor

CONVERSATIONS = "conversations"
CONTACT_VIEWS = "contact_views"

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

# (opener role, counterpart role) -> quota kinds; anything else is `pair_not_open`.
OPEN_PAIRS = {
    ("merchant", "creator"),
    ("creator", "merchant"),
    ("agency", "creator"),
    ("group_leader", "creator"),
    ("group_leader", "merchant"),
}
# The quota items each role has (for GET /v1/quotas/me).
ROLE_ITEMS: dict[str, list[tuple[str, str]]] = {
    "merchant": [(CONVERSATIONS, "creator"), (CONTACT_VIEWS, "creator")],
    "creator": [(CONVERSATIONS, "merchant")],
    "agency": [(CONVERSATIONS, "creator")],
    "group_leader": [(CONVERSATIONS, "creator"), (CONVERSATIONS, "merchant")],
}


# --------------------------------------------------------------------------- the policy
async def policy_for_week(session: AsyncSession, week: datetime) -> tuple[QuotaPolicyIn, datetime | None]:
    """The latest policy effective on or before `week` (the defaults if none)."""
    row = await repo.policy_for_week(session, week)
    if row is None:
        return DEFAULT_POLICY, None
    return QuotaPolicyIn(merchant_tiers=row.merchant_tiers, creator_tiers=row.creator_tiers, fixed=row.fixed), row.effective_week


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
    await repo.put_policy(
        session,
        {
            "id": new_id("qpl"),
            "effective_week": next_week(clock.week_start(now)),
            **body.model_dump(),
            "created_by": actor.id,
            "created_at": now,
        },
    )
    return await get_policy(session)


# --------------------------------------------------------------------------- quotas
async def last_week_gmv(session: AsyncSession, shop_id: str, week: datetime) -> int:
    """Paid minus refunded `amount_fen` of the shop's orders paid in the natural week before `week`."""
    start = clock.local_midnight(clock.local_date(week) - timedelta(days=7))
    return await repo.shop_gmv(session, shop_id, start, week)


async def _snapshot(
    session: AsyncSession, account: OutreachParty, kind: str, counterpart_role: str, week: datetime
) -> tuple[int, str, int | None, datetime | None]:
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


async def ensure_quota(
    session: AsyncSession, account: OutreachParty, kind: str, counterpart_role: str, week: datetime
) -> QuotaRecord:
    """This week's quota row, created with the limit snapshot on first use (race-safe: a racing
    first use inserts nothing, and both read the one row)."""
    row = await repo.quota(session, account.id, week, kind, counterpart_role)
    if row is not None:
        return row
    limit, basis_type, basis_value, effective = await _snapshot(session, account, kind, counterpart_role, week)
    await repo.insert_quota(
        session,
        {
            "id": new_id("oqt"),
            "account_id": account.id,
            "week_start": week,
            "kind": kind,
            "counterpart_role": counterpart_role,
            "quota_limit": limit,
            "used": 0,
            "basis_type": basis_type,
            "basis_value": basis_value,
            "policy_effective_week": effective,
            "created_at": await clock.now(session),
        },
    )
    row = await repo.quota(session, account.id, week, kind, counterpart_role)
    assert row is not None
    return row


def exhausted(row: QuotaRecord, now: datetime) -> QuotaExhausted:
    resets_at = next_week(row.week_start)
    return QuotaExhausted(
        msg(
            "this week's {kind} quota towards {role} accounts is used up ({limit}); it resets at {resets_at}",
            kind=term(row.kind),
            role=term(row.counterpart_role),
            limit=row.quota_limit,
            resets_at=iso_z(resets_at),
        ),
        retry_after=math.ceil((resets_at - now).total_seconds()),
        kind=row.kind,
        counterpart_role=row.counterpart_role,
        limit=row.quota_limit,
        resets_at=iso_z(resets_at),
    )


async def consume(session: AsyncSession, account: OutreachParty, kind: str, counterpart_role: str, now: datetime) -> QuotaRecord:
    """Use one unit of this week's quota with one conditional statement; 429 `quota_exhausted`
    if none is left. The week's first use creates the row (its limit snapshot) first."""
    week = clock.week_start(now)
    used = await repo.use_unit(session, account.id, week, kind, counterpart_role)
    if used is not None:
        return used
    row = await ensure_quota(session, account, kind, counterpart_role, week)
    used = await repo.use_unit(session, account.id, week, kind, counterpart_role) if row.used < row.quota_limit else None
    if used is None:
        raise exhausted(row, now)
    return used


def _item(row: QuotaRecord) -> QuotaItemOut:
    return QuotaItemOut(
        kind=row.kind,
        counterpart_role=row.counterpart_role,
        limit=row.quota_limit,
        used=row.used,
        remaining=max(0, row.quota_limit - row.used),
        basis=QuotaBasis(
            type=row.basis_type,
            last_week_gmv_fen=row.basis_value if row.basis_type == "last_week_gmv" else None,
            level=row.basis_value if row.basis_type == "level" else None,
            policy_effective_from=row.policy_effective_week,
        ),
    )


async def my_quotas(session: AsyncSession, actor: Actor) -> QuotasOut:
    """This week's quotas of the caller. Looking fixes the week's limits like a first use does."""
    found, offset = await repo.parties(session, actor.id, actor.id, with_clock=clock.carries_offset())
    account = found.get(actor.id)
    if account is None:
        raise NotFound("no such account")
    clock.remember(session, offset)
    week = clock.week_start(await clock.now(session))
    items = [
        _item(await ensure_quota(session, account, kind, counterpart_role, week))
        for kind, counterpart_role in ROLE_ITEMS.get(account.role, [])
    ]
    return QuotasOut(week_start=week, resets_at=next_week(week), items=items)
