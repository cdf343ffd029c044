"""The platform's own answers: the machines as `app/modules.py` installed them, their diagrams,
and the test clock (business time, moved by an operator outside production)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import links
from app.core.config import get_settings
from app.core.errors import NotFound
from app.core.i18n import msg
from app.core.times import UtcDatetime
from app.domain.schemas import Strict
from app.state import clock, diagrams
from app.state.core import Actor
from app.state.registry import WORKFLOWS
from app.state.timers import sweep


class TransitionInfo(BaseModel):
    action: str
    source: list[str]
    dest: str | None
    roles: list[str]
    description: str = ""


class MachineInfo(BaseModel):
    name: str
    description: str
    initial: str
    states: list[str]
    final_states: list[str]
    transitions: list[TransitionInfo]
    diagram_svg_url: str = Field(description="a signed link to the machine's picture, for an <img> (an hour)")


class ClockOut(BaseModel):
    now: UtcDatetime


class BusinessClockOut(BaseModel):
    now: UtcDatetime = Field(description="business time (UTC): compute deadlines from it, not from the device's clock")
    test_clock: bool = Field(description="whether the test clock is on (outside production; operators can move it)")


class AdvanceIn(Strict):
    seconds: int = Field(ge=0, le=10 * 365 * 86400)


class AdvanceOut(BaseModel):
    now: UtcDatetime
    fired: int


def machines(actor: Actor) -> list[MachineInfo]:
    return [
        MachineInfo(
            name=w.name,
            description=w.description,
            initial=w.initial,
            states=w.states,
            final_states=sorted(w.final_states),
            transitions=[
                TransitionInfo(
                    action=r.action, source=list(r.source), dest=r.dest, roles=sorted(r.roles), description=r.description
                )
                for r in w.rules
            ],
            diagram_svg_url=links.signed(f"/v1/state-machines/{w.name}/diagram", actor.id, actor.role, params={"format": "svg"}),
        )
        for w in sorted(WORKFLOWS.values(), key=lambda w: w.name)
    ]


def machine_diagram(name: str, format: Literal["mermaid", "svg"]) -> tuple[str, str]:
    """The diagram and its media type."""
    if name not in WORKFLOWS:
        raise NotFound(msg("no machine named '{name}'", name=name))
    if format == "svg":
        return diagrams.svg(name), "image/svg+xml"
    return diagrams.mermaid(name), "text/plain"


def _require_test_clock() -> None:
    if not get_settings().test_clock_enabled:
        raise NotFound("not found")


async def clock_for_clients(session: AsyncSession) -> BusinessClockOut:
    """Business time for every signed-in caller (`GET /v1/clock`)."""
    return BusinessClockOut(now=await clock.now(session), test_clock=get_settings().test_clock_enabled)


async def business_time(session: AsyncSession) -> ClockOut:
    _require_test_clock()
    return ClockOut(now=await clock.now(session))


async def advance_clock(session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], seconds: int) -> AdvanceOut:
    """Move business time forward, commit it, then fire every timer that fell due in the
    sweeper's small committed batches (the request's own transaction ends here)."""
    _require_test_clock()
    now = await clock.advance(session, seconds)
    await session.commit()
    fired = await sweep(sessionmaker)
    return AdvanceOut(now=now, fired=fired)
