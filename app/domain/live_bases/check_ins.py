"""Check-in at a base (签到) with its three rules, and cooperations (合作): a creator's first
confirmed check-in at a base starts one; a creator cooperates with one base at a time."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.errors import Conflict, InvalidTransition, NotFound
from app.db.base import id_for
from app.db.bulk import Part, insert_together
from app.db.models.live_bases import CheckIn, Cooperation
from app.db.repositories import live_bases as repo
from app.db.repositories.live_bases import CheckInRecord, CooperationRecord, Standing
from app.domain.live_bases.qr import base_of_code
from app.domain.live_bases.schemas import CheckInCreate, CheckInOut, CooperationOut, Eligibility
from app.domain.live_bases.service import is_operator, transitions_of
from app.domain.schemas import PageOut, TransitionOut
from app.state import clock
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import SYSTEM, Actor
from app.state.timers import fire_due, fire_due_of, new_timer, on_timer, page_as_of_now

PENDING_CHECK_IN_MINUTES = 10
MAX_LEVEL_FOR_NEW_COOPERATION = 4

HEAD_AGENCY_OTHER_BASE = "head_agency_other_base"
LEVEL_TOO_HIGH = "level_too_high"
COOPERATION_CONFLICT = "cooperation_conflict"


def evaluate(standing: Standing, agency_id: str) -> list[str]:
    """The three check-in rules (达人签到规则) for a creator at a base of `agency_id`; the
    failing reason codes."""
    reasons: list[str] = []
    strong = standing.strong_agency
    if strong is not None and strong != agency_id:
        reasons.append(HEAD_AGENCY_OTHER_BASE)
    if strong is None and standing.cooperation_here is None and (standing.level or 0) > MAX_LEVEL_FOR_NEW_COOPERATION:
        reasons.append(LEVEL_TOO_HIGH)
    if standing.elsewhere:
        reasons.append(COOPERATION_CONFLICT)
    return reasons


def _sees(row: Any, actor: Actor) -> bool:
    return is_operator(actor) or actor.id in (row.creator_id, row.agency_id)


# -- check-ins -------------------------------------------------------------------------------
def check_in_out(row: CheckInRecord, actor: Actor, now: datetime) -> CheckInOut:
    return CheckInOut(
        id=row.id,
        base_id=row.base_id,
        agency_id=row.agency_id,
        creator_id=row.creator_id,
        state=row.state,
        version=row.version,
        allowed_actions=CHECK_IN.allowed_actions(row, actor, now),
        eligibility=Eligibility(eligible=row.eligible, reasons=list(row.reasons or [])),
        created_at=row.created_at,
        expires_at=row.expires_at,
        checked_in_at=row.checked_in_at,
        checked_out_at=row.checked_out_at,
        cooperation_id=row.cooperation_id,
    )


def _check_in_overdue(row: CheckInRecord, now: datetime) -> bool:
    """Whether one of the check-in's timers has fallen due: `expire` at `expires_at` while
    pending, `check-out` at the local midnight after `checked_in_at` while checked in."""
    if row.state == "pending_confirmation":
        return row.expires_at <= now
    return row.state == "checked_in" and row.checked_in_at is not None and clock.next_local_midnight(row.checked_in_at) <= now


async def _fire_overdue(session: AsyncSession, row: CheckInRecord, now: datetime) -> bool:
    """Fire what is due for a check-in, as the sweeper would have, in the lock order
    (cooperation, then check-in): its cooperation's end (which checks it out), then its own
    timer. Whether anything was due."""
    due = False
    if row.state == "checked_in" and row.cooperation_id is not None:
        cooperation = await repo.cooperation(session, row.cooperation_id)
        if cooperation is not None and cooperation.state == "active" and cooperation.ends_at <= now:
            await fire_due(session, entity_id=cooperation.id)
            due = True
    if _check_in_overdue(row, now):
        await fire_due(session, entity_id=row.id)
        due = True
    return due


async def _visible_check_in(session: AsyncSession, actor: Actor, check_in_id: str) -> tuple[CheckInRecord, datetime]:
    """The check-in as of now (an overdue timer fired first, as the sweeper would have) and
    business time. No lock: a transition's conditional UPDATE sees whether it moved since."""
    row = await repo.check_in(session, check_in_id)
    if row is None or not _sees(row, actor):
        raise NotFound("no such check-in")
    now = await clock.now(session)
    if await _fire_overdue(session, row, now):
        row = await repo.check_in(session, check_in_id)
        assert row is not None
    return row, now


async def open_check_in(session: AsyncSession, actor: Actor, body: CheckInCreate) -> CheckInOut:
    """The check-in page of a scanned code: `pending_confirmation` with its eligibility, or
    `rejected` with the reasons. One statement writes it with its history, event and timer."""
    base = await base_of_code(session, body.token)
    now = await clock.now(session)
    standing = await repo.standing_of(session, actor.id, base.id, now)
    if standing is None:
        raise NotFound("no such account")
    if standing.present is not None:  # still present as of now? (its check-out may be due)
        present = await repo.check_in(session, standing.present)
        if present is not None and await _fire_overdue(session, present, now):
            standing = await repo.standing_of(session, actor.id, base.id, now)
            assert standing is not None
    if standing.present is not None:
        raise Conflict("you are already checked in at this base", code="already_checked_in", check_in_id=standing.present)
    reasons = evaluate(standing, base.agency_id)
    expires_at = now + timedelta(minutes=PENDING_CHECK_IN_MINUTES)
    row, parts = CHECK_IN.creation(
        {
            "id": id_for(CheckIn),
            "base_id": base.id,
            "agency_id": base.agency_id,
            "creator_id": actor.id,
            "eligible": not reasons,
            "reasons": reasons,
            "created_at": now,
            "expires_at": expires_at,
            "checked_in_at": None,
            "checked_out_at": None,
            "cooperation_id": None,
        },
        actor,
        now,
        state="rejected" if reasons else None,
        reason={"reasons": reasons} if reasons else None,
        event_data={"base_id": base.id},
    )
    await insert_together(session, *parts, *([] if reasons else [new_timer("check_in", row.id, "expire", expires_at)]))
    return check_in_out(row, actor, now)


async def get_check_in(session: AsyncSession, actor: Actor, check_in_id: str) -> CheckInOut:
    row, now = await _visible_check_in(session, actor, check_in_id)
    return check_in_out(row, actor, now)


async def check_in_history(session: AsyncSession, actor: Actor, check_in_id: str) -> list[TransitionOut]:
    await get_check_in(session, actor, check_in_id)
    return await transitions_of(session, CHECK_IN.name, check_in_id)


async def list_check_ins(
    session: AsyncSession, actor: Actor, *, state: str | None, base_id: str | None, limit: int, cursor: str | None
) -> PageOut[CheckInOut]:
    page = await repo.check_ins_page(session, actor.role, actor.id, state=state, base_id=base_id, limit=limit, cursor=cursor)
    now = await clock.now(session)
    # the page as of now: its cooperations' ends first, then the check-ins' own timers (the lock order)
    cooperations = [r.cooperation_id for r in page.items if r.state == "checked_in" and r.cooperation_id is not None]
    fired = await fire_due_of(session, COOPERATION.name, cooperations)
    if await fire_due_of(session, CHECK_IN.name, [r.id for r in page.items]) or fired:
        page = await repo.check_ins_page(session, actor.role, actor.id, state=state, base_id=base_id, limit=limit, cursor=cursor)
    return PageOut[CheckInOut](items=[check_in_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def confirm_check_in(session: AsyncSession, actor: Actor, check_in_id: str) -> CheckInOut:
    """The rules are evaluated again: `checked_in` (under the creator's active cooperation with
    the base, or a new one) or `rejected` with the reasons. The transition, a new cooperation
    with its history and event, and both timers are one statement."""
    seen = await repo.check_in(session, check_in_id)
    if seen is None or not _sees(seen, actor):
        raise NotFound("no such check-in")
    # Lock the creator before reading the rules: two confirms of one creator at two bases are
    # decided one at a time, the second seeing the cooperation the first started. (The
    # check-in itself needs no lock: the transition's conditional UPDATE is its check.) Locks in
    # the global order: the account, its cooperations, then the check-in.
    await repo.lock_account(session, seen.creator_id)
    now = await clock.now(session)
    for overdue in await repo.overdue_cooperations_of(session, seen.creator_id, now):
        await fire_due(session, entity_id=overdue)  # ended as of now
    # and hold the cooperation it may check in under: ending it concurrently would miss this
    # check-in (the standing below, read after the lock, sees an end committed meanwhile)
    await repo.hold_active_cooperations(session, seen.creator_id, seen.base_id)
    row, now = await _visible_check_in(session, actor, check_in_id)
    reasons: list[str] = []
    changes: dict[str, Any] = {}
    also: list[Part] = []
    if row.state == "pending_confirmation":
        standing = await repo.standing_of(session, row.creator_id, row.base_id, now)
        assert standing is not None
        reasons = evaluate(standing, row.agency_id)
        changes = {"eligible": not reasons, "reasons": reasons}
        if not reasons:
            cooperation_id = standing.cooperation_here
            if cooperation_id is None:
                cooperation_id, also = _new_cooperation(row, actor, now)
            changes |= {"checked_in_at": now, "cooperation_id": cooperation_id}
            also.append(new_timer("check_in", row.id, "check-out", clock.next_local_midnight(now)))
    row = await CHECK_IN.fire(
        session,
        row,
        "confirm",
        actor,
        now=now,
        extra={"eligible": not reasons},
        reason={"reasons": reasons} if reasons else None,
        changes=changes,
        also=also,
    )
    return check_in_out(row, actor, now)


def _new_cooperation(check_in: CheckInRecord, actor: Actor, now: datetime) -> tuple[str, list[Part]]:
    """A cooperation started by a confirmed check-in, with its end's timer, as rows."""
    ends_at = now + timedelta(days=get_settings().cooperation_days)
    cooperation, parts = COOPERATION.creation(
        {
            "id": id_for(Cooperation),
            "base_id": check_in.base_id,
            "agency_id": check_in.agency_id,
            "creator_id": check_in.creator_id,
            "started_at": now,
            "ends_at": ends_at,
            "ended_at": None,
        },
        actor,
        now,
        event_data={"check_in_id": check_in.id},
    )
    return cooperation.id, [*parts, new_timer("cooperation", cooperation.id, "end", ends_at)]


async def check_out(session: AsyncSession, actor: Actor, check_in_id: str, reason: str | None) -> CheckInOut:
    row, now = await _visible_check_in(session, actor, check_in_id)
    row = await CHECK_IN.fire(session, row, "check-out", actor, now=now, reason=reason, changes={"checked_out_at": now})
    return check_in_out(row, actor, now)


@on_timer("check_in", "check-out")
async def _check_out_at_midnight(session: AsyncSession, row: Any, now: datetime) -> None:
    await CHECK_IN.fire(
        session, row, "check-out", SYSTEM, now=now, reason="end of the calendar day", changes={"checked_out_at": now}
    )


# -- cooperations ----------------------------------------------------------------------------
def cooperation_out(row: CooperationRecord, actor: Actor, now: datetime) -> CooperationOut:
    return CooperationOut(
        id=row.id,
        base_id=row.base_id,
        agency_id=row.agency_id,
        creator_id=row.creator_id,
        state=row.state,
        version=row.version,
        allowed_actions=COOPERATION.allowed_actions(row, actor, now),
        started_at=row.started_at,
        ends_at=row.ends_at,
        ended_at=row.ended_at,
    )


async def _check_out_present(session: AsyncSession, cooperation: CooperationRecord, now: datetime) -> None:
    """A creator whose cooperation ends is no longer present at the base."""
    for row in await repo.present_check_ins_of(session, cooperation.id):
        # one checked out by another request since it was read has nothing left to do
        with contextlib.suppress(InvalidTransition):
            await CHECK_IN.fire(
                session,
                row,
                "check-out",
                SYSTEM,
                now=now,
                reason=f"cooperation {cooperation.state}",
                changes={"checked_out_at": now},
            )


async def _visible_cooperation(session: AsyncSession, actor: Actor, cooperation_id: str) -> tuple[CooperationRecord, datetime]:
    """The cooperation as of now (ended first when past `ends_at`) and business time."""
    row = await repo.cooperation(session, cooperation_id)
    if row is None or not _sees(row, actor):
        raise NotFound("no such cooperation")
    now = await clock.now(session)
    if row.state == "active" and row.ends_at <= now:
        await fire_due(session, entity_id=cooperation_id)
        row = await repo.cooperation(session, cooperation_id)
        assert row is not None
    return row, now


async def get_cooperation(session: AsyncSession, actor: Actor, cooperation_id: str) -> CooperationOut:
    row, now = await _visible_cooperation(session, actor, cooperation_id)
    return cooperation_out(row, actor, now)


async def cooperation_history(session: AsyncSession, actor: Actor, cooperation_id: str) -> list[TransitionOut]:
    await _visible_cooperation(session, actor, cooperation_id)
    return await transitions_of(session, COOPERATION.name, cooperation_id)


async def list_cooperations(
    session: AsyncSession, actor: Actor, *, state: str | None, limit: int, cursor: str | None
) -> PageOut[CooperationOut]:
    page = await page_as_of_now(
        session,
        COOPERATION.name,
        lambda: repo.cooperations_page(session, actor.role, actor.id, state=state, limit=limit, cursor=cursor),
    )
    now = await clock.now(session)
    return PageOut[CooperationOut](items=[cooperation_out(r, actor, now) for r in page.items], next_cursor=page.next_cursor)


async def terminate_cooperation(session: AsyncSession, actor: Actor, cooperation_id: str, reason: str | None) -> CooperationOut:
    row, now = await _visible_cooperation(session, actor, cooperation_id)
    row = await COOPERATION.fire(session, row, "terminate", actor, now=now, reason=reason, changes={"ended_at": now})
    await _check_out_present(session, row, now)
    return cooperation_out(row, actor, now)


@on_timer("cooperation", "end")
async def _end_cooperation(session: AsyncSession, row: Any, now: datetime) -> None:
    row = await COOPERATION.fire(session, row, "end", SYSTEM, now=now, changes={"ended_at": row.ends_at})
    await _check_out_present(session, row, now)
