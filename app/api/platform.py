"""State machines, the test clock, and operations endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import CurrentActor, Operator, Session, link_or_roles
from app.api.routing import TxRoute
from app.db.repositories import platform as platform_repo
from app.domain import platform as svc
from app.domain.platform import AdvanceIn, AdvanceOut, BusinessClockOut, ClockOut, MachineInfo
from app.state.core import Actor

router = APIRouter(route_class=TxRoute)


@router.get("/v1/state-machines", response_model=list[MachineInfo], tags=["state machines"], name="list_state_machines")
async def list_state_machines(actor: CurrentActor) -> list[MachineInfo]:
    """Every workflow machine with its states and transitions, and which roles may fire each,
    and a signed link to its picture."""
    return svc.machines(actor)


@router.get(
    "/v1/state-machines/{name}/diagram",
    tags=["state machines"],
    name="get_state_machine_diagram",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "image/svg+xml": {}}}},
)
async def state_machine_diagram(
    name: str,
    _: Annotated[Actor, Depends(link_or_roles())],
    format: Annotated[Literal["mermaid", "svg"], Query()] = "mermaid",
) -> Response:
    """The Mermaid source of a machine (`text/plain`), or `?format=svg` a picture."""
    diagram, media_type = svc.machine_diagram(name, format)
    return Response(diagram, media_type=media_type)


@router.get("/v1/clock", response_model=BusinessClockOut, tags=["operations"], name="get_business_time")
async def get_business_time(session: Session, _: CurrentActor) -> BusinessClockOut:
    """The service's business time, for every signed-in caller: deadlines (`accept_deadline`,
    `review_deadline`, quotas' weeks) run on it, and with the test clock on it is not the wall
    clock."""
    return await svc.clock_for_clients(session)


@router.get("/v1/admin/clock", response_model=ClockOut, tags=["admin"], name="get_clock")
async def get_clock(session: Session, _: Operator) -> ClockOut:
    return await svc.business_time(session)


@router.post("/v1/admin/clock/advance", response_model=AdvanceOut, tags=["admin"], name="advance_clock")
async def advance_clock(body: AdvanceIn, request: Request, session: Session, _: Operator) -> AdvanceOut:
    """Move business time forward and fire every timer that fell due, before answering (in
    the sweeper's small committed batches, after the new time is committed)."""
    return await svc.advance_clock(session, request.app.state.sessionmaker, body.seconds)


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
        from app.api.errors import unavailable

        return unavailable(f"database unreachable: {type(exc).__name__}")
    return Response('{"status":"ok"}', media_type="application/json")


@ops.get("/metrics", name="metrics", response_class=PlainTextResponse)
async def metrics() -> Response:
    """Prometheus metrics: request latency, transitions by machine and action, timer lag."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
