"""What moves signups from outside a request on them: the `expire` timer at the campaign's
`product_deadline`, and the creator's live sessions (`live_session_started`/`_ended`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories import campaigns as repo
from app.db.repositories.campaigns import SignupRecord
from app.state import clock
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.core import SYSTEM
from app.state.timers import on_timer


@on_timer("campaign_signup", "expire")
async def _expire(session: AsyncSession, row: SignupRecord, now: datetime) -> None:
    """The event concerns the listed shops too: the signup is fired with its parts."""
    signup, _ = await repo.signup(session, row.id)
    assert signup is not None
    await CAMPAIGN_SIGNUP.fire(session, signup, "expire", SYSTEM, now=now)


async def _on_live_started(session: AsyncSession, live_session: Any) -> None:
    """A session of the creator starting inside a campaign's live window moves its `ready`
    signup (the one whose planned_live_at is nearest, per campaign) to `live`."""
    started = live_session.started_at
    chosen: dict[str, tuple[str, datetime]] = {}
    for signup_id, campaign_id, planned in await repo.ready_signups_at(session, live_session.host_id, started):
        best = chosen.get(campaign_id)
        if best is None or abs(planned - started) < abs(best[1] - started):
            chosen[campaign_id] = (signup_id, planned)
    if not chosen:
        return
    now = await clock.now(session)
    for signup_id, _ in chosen.values():
        row, _ = await repo.signup(session, signup_id, lock=True)
        if row is None or row.state != "ready":
            continue
        await CAMPAIGN_SIGNUP.fire(
            session,
            row,
            "start-live",
            SYSTEM,
            now=now,
            event_data={"live_session_id": live_session.id},
            changes={"live_session_id": live_session.id},
        )


async def _on_live_ended(session: AsyncSession, live_session: Any) -> None:
    ids = await repo.live_signups_of_session(session, live_session.id)
    if not ids:
        return
    now = await clock.now(session)
    for signup_id in ids:
        row, _ = await repo.signup(session, signup_id, lock=True)
        if row is not None and row.state == "live":
            await CAMPAIGN_SIGNUP.fire(session, row, "end-live", SYSTEM, now=now, event_data={"live_session_id": live_session.id})
