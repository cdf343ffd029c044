"""State machines, the test clock, and operations endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from app.api.deps import CurrentActor, Operator, Session
from app.api.routing import TxRoute
from app.core.config import get_settings
from app.core.errors import NotFound
from app.db.repositories import platform as platform_repo
from app.domain.schemas import Strict
from app.state import clock, diagrams
from app.state.registry import WORKFLOWS
from app.state.timers import sweep

router = APIRouter(route_class=TxRoute)


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


@router.get("/v1/state-machines", response_model=list[MachineInfo], tags=["state machines"], name="list_state_machines")
async def list_state_machines(_: CurrentActor) -> list[MachineInfo]:
    """Every workflow machine with its states and transitions, and which roles may fire each."""
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
        )
        for w in sorted(WORKFLOWS.values(), key=lambda w: w.name)
    ]


@router.get(
    "/v1/state-machines/{name}/diagram",
    tags=["state machines"],
    name="get_state_machine_diagram",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "image/svg+xml": {}}}},
)
async def state_machine_diagram(
    name: str, _: CurrentActor, format: Annotated[Literal["mermaid", "svg"], Query()] = "mermaid"
) -> Response:
    """The Mermaid source of a machine (`text/plain`), or `?format=svg` a picture."""
    if name not in WORKFLOWS:
        raise NotFound(f"no machine named '{name}'")
    if format == "svg":
        return Response(diagrams.svg(name), media_type="image/svg+xml")
    return PlainTextResponse(diagrams.mermaid(name))


class ClockOut(BaseModel):
    now: str


class AdvanceIn(Strict):
    seconds: int = Field(ge=0, le=10 * 365 * 86400)


class AdvanceOut(BaseModel):
    now: str
    fired: int


def _require_test_clock() -> None:
    if not get_settings().test_clock_enabled:
        raise NotFound("not found")


@router.get("/v1/admin/clock", response_model=ClockOut, tags=["admin"], name="get_clock")
async def get_clock(session: Session, _: Operator) -> ClockOut:
    _require_test_clock()
    return ClockOut(now=(await clock.now(session)).isoformat())


@router.post("/v1/admin/clock/advance", response_model=AdvanceOut, tags=["admin"], name="advance_clock")
async def advance_clock(body: AdvanceIn, request: Request, session: Session, _: Operator) -> AdvanceOut:
    """Move business time forward and fire every timer that fell due, before answering (in
    the sweeper's small committed batches, after the new time is committed)."""
    _require_test_clock()
    now = await clock.advance(session, body.seconds)
    await session.commit()
    fired = await sweep(request.app.state.sessionmaker)
    return AdvanceOut(now=now.isoformat(), fired=fired)


ops = APIRouter(tags=["operations"])


@ops.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@ops.get("/readyz", name="readyz", responses={503: {"description": "database unreachable"}})
async def readyz(request: Request) -> Response:
    """The database is reachable."""
    try:
        async with request.app.state.sessionmaker() as session:
            await platform_repo.ping(session)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        from app.api.errors import problem

        return problem(503, "unavailable", f"database unreachable: {type(exc).__name__}")
    return Response('{"status":"ok"}', media_type="application/json")


@ops.get("/metrics", name="metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    """Prometheus metrics: request latency, transitions by machine and action, timer lag."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
